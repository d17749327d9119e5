"""The `trunkplane` command."""

import os

# gRPC core logs through absl. With GRPC_VERBOSITY unset its INFO lines reach the user's
# stderr: a read of a replayed directory printed "Got goaway" when its in-process server
# closed. Errors still show; an explicit GRPC_VERBOSITY (e.g. DEBUG) still wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from infra.cli.main import main  # after the setting: grpc reads it when it loads

__all__ = ["main"]
