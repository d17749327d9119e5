"""The `trunkplane` command."""

from infra.cli.main import main

__all__ = ["main"]
