"""The event store's and the views' adapters: opening them, the group-commit command bus,
leader election among control planes sharing PostgreSQL."""
