"""A stop always finishes: SIGTERM delivered twice (as `make run` does when its process
group is stopped) or in a burst, while clients write, never leaves `serve` hanging."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.brokers import free_port
from tests.integration.helpers import register_trunk
from trunkplane.v1 import trunk_pb2, trunk_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "TRUNKPLANE_DATA": str(tmp_path / "var"), "TRUNKPLANE_TLS": "off",
           "TRUNKPLANE_LISTEN": f"127.0.0.1:{port}", "TRUNKPLANE_SIP": "off",
           "TRUNKPLANE_METRICS_LISTEN": "off"}
    process = subprocess.Popen([sys.executable, "-m", "infra.cli", "serve"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == (
                        health_pb2.HealthCheckResponse.SERVING):
                    break
            except grpc.RpcError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
    return process, port


def _write_until_stopped(port: int, token: str, stop: threading.Event) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        trunks = trunk_pb2_grpc.TrunkServiceStub(channel)
        number = 0
        while not stop.is_set():
            number += 1
            try:
                trunks.CreateTrunk(trunk_pb2.CreateTrunkRequest(
                    trunk=register_trunk(f"t{number}", host="127.0.0.1")),
                    metadata=(("authorization", f"Bearer {token}"),), timeout=2)
            except grpc.RpcError:
                time.sleep(0.01)  # stopping: the server refuses or is gone


@pytest.mark.parametrize("round_", range(4))
def test_a_burst_of_sigterms_under_load_stops_serve(tmp_path: Path, round_: int) -> None:
    process, port = _start(tmp_path)
    token = (tmp_path / "var" / "admin.token").read_text().strip()
    stop = threading.Event()
    writers = [threading.Thread(target=_write_until_stopped, args=(port, token, stop))
               for _ in range(4)]
    for writer in writers:
        writer.start()
    try:
        time.sleep(0.5 + round_ * 0.2)
        for _ in range(3):
            process.send_signal(signal.SIGTERM)
            time.sleep(0.001 * round_)
        assert process.wait(timeout=30) == 0
    finally:
        stop.set()
        for writer in writers:
            writer.join()
        if process.poll() is None:
            process.kill()


def test_a_taken_port_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "TRUNKPLANE_DATA": str(tmp_path / "var"), "TRUNKPLANE_TLS": "off",
               "TRUNKPLANE_LISTEN": f"127.0.0.1:{port}", "TRUNKPLANE_SIP": "off",
               "TRUNKPLANE_METRICS_LISTEN": "off", "TRUNKPLANE_WEB_LISTEN": "off"}
        done = subprocess.run([sys.executable, "-m", "infra.cli", "serve"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
