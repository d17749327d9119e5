"""Adapters and wiring: settings, event store, gRPC servers, CLI."""
