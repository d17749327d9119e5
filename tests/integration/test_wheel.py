"""The package as users install it: a wheel built from the repository, installed into a
fresh virtual environment outside it, serves. (An editable install hides what a wheel
leaves out: one once shipped without sipagent.sip and without the Avro schemas.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infra.messaging.schemas import released
from tests.brokers import free_port
from trunkplane.v1 import trunk_pb2, trunk_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin` folder of a fresh virtual environment holding only the built wheel and
    what it depends on."""
    where = tmp_path_factory.mktemp("wheel")
    dist = where / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                    str(ROOT)], check=True, cwd=where)
    wheels = list(dist.glob("trunkplane-*.whl"))
    assert len(wheels) == 1
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True)
    bin_dir = where / "venv" / "bin"
    subprocess.run([str(bin_dir / "pip"), "install", "-q", "--disable-pip-version-check",
                    str(wheels[0])], check=True, cwd=where)
    return bin_dir


def test_the_installed_command_runs_outside_the_repository(installed: Path,
                                                           tmp_path: Path) -> None:
    done = subprocess.run([str(installed / "trunkplane"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout


def test_the_wheel_ships_every_released_avro_schema(installed: Path, tmp_path: Path) -> None:
    script = ("from infra.messaging.schemas import SCHEMA_DIR, released; "
              "print(SCHEMA_DIR); print(sum(len(v) for v in released().values()))")
    done = subprocess.run([str(installed / "python"), "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=True)
    where, count = done.stdout.split()
    assert not Path(where).is_relative_to(ROOT), "the schemas must come from the install"
    assert int(count) == sum(len(v) for v in released().values())


@pytest.fixture
def served(installed: Path, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    env = {**os.environ, "TRUNKPLANE_DATA": str(tmp_path / "var"),
           "TRUNKPLANE_LISTEN": f"127.0.0.1:{port}", "TRUNKPLANE_SIP": "off",
           "TRUNKPLANE_METRICS_LISTEN": "off"}
    env.pop("PYTHONPATH", None)
    process = subprocess.Popen([str(installed / "trunkplane"), "serve"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield port, tmp_path / "var"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def test_the_installed_service_answers_health_and_templates(
        served: tuple[int, Path]) -> None:
    port, data = served
    deadline = time.monotonic() + 60
    while not (data / "tls.crt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    credentials = grpc.ssl_channel_credentials((data / "tls.crt").read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        stub: Any = health_pb2_grpc.HealthStub(channel)
        health = stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        token = (data / "admin.token").read_text().strip()
        templates = trunk_pb2_grpc.TrunkServiceStub(channel).ListProviderTemplates(
            trunk_pb2.ListProviderTemplatesRequest(),
            metadata=(("authorization", f"Bearer {token}"),), timeout=10)
        assert len(templates.templates) >= 3
