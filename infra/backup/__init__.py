"""What leaves the service to be kept: the configuration documents of `config export`
and `config import`."""
