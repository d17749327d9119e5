"""Nothing a test, benchmark or the tour starts sends beyond loopback (issue 18)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_command_bench_server_sends_sip_only_to_loopback(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        commands = importlib.import_module("commands")
    finally:
        sys.path.remove(str(BENCH))
    env = commands.server_env(tmp_path, "127.0.0.1:1")
    assert env["TRUNKPLANE_SIP_DESTINATIONS"] == "127.0.0.0/8,::1/128"
    assert env["TRUNKPLANE_SIP_LISTEN"].startswith("127.0.0.1:")
