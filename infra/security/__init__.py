"""Tokens and roles, the store's key ring, TLS, and sealing for the wire and for backups."""
