"""The pictures: the Grafana dashboard queries only metrics a live server serves (with the
trunk's name on every per-trunk series), and the Prometheus alerting rules pass promtool's
check and its unit tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.app.control import start
from infra.config.settings import KafkaSettings
from sipagent.settings import SipSettings
from tests.conftest import Api, settings_for
from tests.integration.helpers import create_trunk
from tests.kamailio import Kamailio
from trunkplane.v1 import trunk_pb2

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "infra/deploy/grafana/trunkplane-dashboard.json"
RULES = ROOT / "infra/deploy/prometheus"
METRIC = re.compile(r"\btrunkplane_[a-z0-9_]+")
# Only `trunkplane control` relays to Kafka; these are checked on one.
DISTRIBUTED_ONLY = {"trunkplane_relay_lag_events"}
PER_TRUNK = {"trunkplane_trunk_state", "trunkplane_active_calls", "trunkplane_peer_up",
             "trunkplane_trunk_call_limit", "trunkplane_sip_options_rtt_ms"}


def queried(path: Path) -> set[str]:
    exprs: list[str] = []
    for panel in json.loads(path.read_text())["panels"]:
        exprs += [target["expr"] for target in panel["targets"]]
    return {name for expr in exprs for name in METRIC.findall(expr)}


def scrape(port: int) -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets it was served with; a family without samples yet (a
    counter nothing has counted) under the name a query would use."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    found: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text.decode()):
        found.setdefault(family.name + ("_total" if family.type == "counter" else ""), [])
        for sample in family.samples:
            found.setdefault(sample.name, []).append(dict(sample.labels))
    return found


def sip() -> SipSettings:
    return SipSettings(agent_id="pictures", listen_port=0, t1=0.1, startup_spread=0.0,
                       backoff_base=0.3, backoff_max=2.0, options_interval=0.3,
                       options_timeout=0.3, destinations=("127.0.0.0/8",))


@pytest.fixture
def live(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Api, Kamailio]]:
    with Kamailio(tmp_path / "kamailio", {"1001": "Right-Password-1001"}) as kamailio:
        settings = replace(settings_for("sqlite", tmp_path, request), sip=sip(),
                           metrics_listen="127.0.0.1:0")
        api = Api(settings)
        try:
            yield api, kamailio
        finally:
            api.close()


def states(served: dict[str, list[dict[str, str]]]) -> set[tuple[str, str]]:
    return {(s["trunk"], s["state"]) for s in served.get("trunkplane_trunk_state", [])}


def wait_for(port: int, names: set[str], timeout: float = 20.0) -> dict[str, list[dict[str, str]]]:
    """Until every name has samples and both trunks show the state they settle in."""
    deadline = time.monotonic() + timeout
    while True:
        served = scrape(port)
        settled = {("carrier", "ok"), ("voco", "auth_failed")} <= states(served)
        if (settled and all(served.get(name) for name in names)) or (
                time.monotonic() > deadline):
            return served
        time.sleep(0.2)


def test_every_metric_the_dashboard_queries_is_served_with_trunk_names(
        live: tuple[Api, Kamailio]) -> None:
    api, kamailio = live
    create_trunk(api, "carrier", type="peer", username="", password="",
                 peer_addresses=[f"127.0.0.1:{kamailio.udp}"],
                 call_limits=trunk_pb2.CallLimits(max_concurrent_calls=8))
    create_trunk(api, "voco", host=f"127.0.0.1:{kamailio.udp}", username="1001",
                 password="Wrong-Password-1001")
    wanted = queried(DASHBOARD) - DISTRIBUTED_ONLY
    served = wait_for(api.plane.metrics_port, PER_TRUNK | {
        "trunkplane_sip_registration_failures_total"})
    assert sorted(wanted - served.keys()) == []
    for name in PER_TRUNK:
        assert {labels["trunk"] for labels in served[name]} >= {"carrier"}, name
    assert {("carrier", "ok"), ("voco", "auth_failed")} <= states(served)


def test_the_relay_lag_the_dashboard_shows_is_served_by_a_control_plane(
        tmp_path: Path, request: pytest.FixtureRequest, kafka: KafkaSettings) -> None:
    settings = replace(settings_for("sqlite", tmp_path, request), kafka=kafka,
                       metrics_listen="127.0.0.1:0")
    plane = start(settings, mode="control")
    try:
        served = scrape(plane.metrics_port)
    finally:
        plane.stop(grace=1)
    assert sorted(DISTRIBUTED_ONLY - served.keys()) == []


def test_alerting_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: infra/scripts/ensure-prometheus.sh installs it"
    for command in (["check", "rules", "trunkplane-rules.yml"],
                    ["test", "rules", "trunkplane-rules.test.yml"]):
        done = subprocess.run([promtool, *command], cwd=RULES, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_alerting_rules_use_only_metrics_the_dashboard_test_proves_served() -> None:
    rules = METRIC.findall((RULES / "trunkplane-rules.yml").read_text())
    proven = queried(DASHBOARD) | PER_TRUNK
    assert sorted(set(rules) - proven) == []
