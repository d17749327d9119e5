"""Adapters and wiring, one sub-package per role (see the README's layout table)."""
