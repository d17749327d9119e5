"""The deployment sample, read as a container engine would read it (no engine runs on the
build machines): infra/deploy/compose.yaml with its anchors resolved, and the Dockerfile.
Each rule below is one thing that once kept the sample from starting."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "deploy" / "compose.yaml"
KAFKA = ("kafka-1", "kafka-2", "kafka-3")
CONTROLS = ("control-1", "control-2")
AGENTS = ("agent-1", "agent-2", "agent-3")
LONG_RUNNING = (*KAFKA, "postgres", *CONTROLS, *AGENTS)


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())  # resolves the <<: merge keys
    found: dict[str, Any] = document["services"]
    assert set(LONG_RUNNING) <= set(found)
    return found


@pytest.fixture(scope="module")
def volumes() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["volumes"] or {})


def env(service: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (service.get("environment") or {}).items()}


def test_the_image_is_built_from_the_wheel(services: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip wheel .*--wheel-dir /wheels \.", dockerfile)
    assert re.search(r"pip install .*/wheels/trunkplane-\*\.whl", dockerfile)
    for name in (*CONTROLS, *AGENTS):
        build = services[name].get("build")
        assert build and Path(COMPOSE.parent / build["context"]).resolve() == ROOT, name
        assert services[name]["image"] == "trunkplane:latest"


def test_kafka_has_a_valid_cluster_id_and_a_volume(services: dict[str, Any],
                                                  volumes: dict[str, Any]) -> None:
    for name in KAFKA:
        cluster_id = env(services[name])["CLUSTER_ID"]
        assert len(cluster_id) == 22, cluster_id  # a base64url UUID without padding
        assert uuid.UUID(bytes=base64.urlsafe_b64decode(cluster_id + "=="))
        mounts = [str(m).split(":") for m in services[name].get("volumes", [])]
        assert any(source in volumes and target == "/var/lib/kafka/data"
                   for source, target, *_ in mounts), name
    postgres = [str(m).split(":") for m in services["postgres"]["volumes"]]
    assert any(source in volumes for source, *_ in postgres)


def test_every_service_has_a_health_check_and_a_restart_policy(
        services: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck") or {}
        assert check.get("test"), f"{name} has no health check"
        assert services[name].get("restart") in ("unless-stopped", "always"), name
    assert services["kafka-init"].get("restart") == "on-failure"


def test_processes_wait_for_what_they_need_to_be_healthy(services: dict[str, Any]) -> None:
    init = services["kafka-init"]["depends_on"]
    assert all(init[k]["condition"] == "service_healthy" for k in KAFKA)
    for name in CONTROLS:
        needs = services[name]["depends_on"]
        assert needs["postgres"]["condition"] == "service_healthy"
        assert needs["kafka-init"]["condition"] == "service_completed_successfully"
    for name in AGENTS:
        needs = services[name]["depends_on"]
        assert needs["kafka-init"]["condition"] == "service_completed_successfully"


def test_agents_get_only_the_wire_key(services: dict[str, Any]) -> None:
    for name in AGENTS:
        settings = env(services[name])
        assert "TRUNKPLANE_WIRE_KEY" in settings
        assert "TRUNKPLANE_DATABASE_URL" not in settings, name
        assert "TRUNKPLANE_CIPHER_KEY" not in settings, name
    for name in CONTROLS:
        assert {"TRUNKPLANE_DATABASE_URL", "TRUNKPLANE_CIPHER_KEY",
                "TRUNKPLANE_WIRE_KEY"} <= set(env(services[name]))


def test_agents_listen_on_every_address_advertise_a_name_and_publish_sip(
        services: dict[str, Any]) -> None:
    published: set[str] = set()
    for name in AGENTS:
        settings = env(services[name])
        assert settings["TRUNKPLANE_LISTEN"].startswith("0.0.0.0:"), name
        assert settings["TRUNKPLANE_SIP_LISTEN"].startswith("0.0.0.0:"), name
        advertise = settings["TRUNKPLANE_ADVERTISE"]
        assert not advertise.startswith(("127.", "localhost", "0.0.0.0")), name  # noqa: S104
        sip_port = settings["TRUNKPLANE_SIP_LISTEN"].rsplit(":", 1)[1]
        ports = [str(p) for p in services[name].get("ports", [])]
        assert any(p.endswith(f":{sip_port}/udp") for p in ports), (name, ports)
        published |= {p.split(":")[0] for p in ports if p.endswith("/udp")}
    assert len(published) == len(AGENTS)  # one host port each


def test_tokens_live_in_a_directory_volume(services: dict[str, Any],
                                          volumes: dict[str, Any]) -> None:
    for name in (*CONTROLS, *AGENTS):
        for mount in services[name].get("volumes", []):
            source, target = str(mount).split(":")[:2]
            assert not target.endswith(".json"), f"{name}: a file bind mount {mount}"
            assert source in volumes, f"{name}: {source} is not a named volume"
        data = env(services[name])["TRUNKPLANE_DATA"]
        assert any(str(m).split(":")[1] == data for m in services[name]["volumes"]), name
    shared = {str(m).split(":")[0] for name in CONTROLS for m in services[name]["volumes"]}
    assert len(shared) == 1  # both control planes read and write the same tokens
