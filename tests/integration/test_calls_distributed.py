"""A call through the distributed mode as an operator runs it: `trunkplane control` on
PostgreSQL and `trunkplane agent` as processes, connected through a real Kafka-protocol
broker; the PBX access set with the CLI reaches the agent through the events topic, the
agent carries a call from a (scripted) PBX to a peer trunk, and its record comes back from
`trunkplane calls` on the control plane through the calls topic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import WIRE_KEY
from tests.integration.test_cli import CLI, Server, free_port
from tests.sipua import ThreadedUA

T = TypeVar("T")


def agent_env(tmp_path: Path, kafka: dict[str, str], pbx_port: int) -> dict[str, str]:
    env = {**os.environ, **kafka, "TRUNKPLANE_AGENT_ID": "agent-calls",
           "TRUNKPLANE_DATA": str(tmp_path / "agent"),
           "TRUNKPLANE_LISTEN": f"127.0.0.1:{free_port()}",
           "TRUNKPLANE_METRICS_LISTEN": "off",
           "TRUNKPLANE_SIP_LISTEN": f"127.0.0.1:{free_port()}",
           "TRUNKPLANE_PBX_LISTEN": f"127.0.0.1:{pbx_port}",
           "TRUNKPLANE_SIP_OPTIONS_INTERVAL": "0.5", "TRUNKPLANE_SIP_OPTIONS_TIMEOUT": "0.5",
           "TRUNKPLANE_SIP_STARTUP_SPREAD": "0"}
    for name in ("TRUNKPLANE_DATABASE_URL", "TRUNKPLANE_SIP_TLS_CERT", "TRUNKPLANE_SIP_TLS_KEY"):
        env.pop(name, None)
    return env


def wait_for(check: Callable[[], T], timeout: float, what: str, log: Path) -> T:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: {log.read_text()[-3000:]}"
        time.sleep(0.3)
    return found


def test_a_call_through_an_agent_is_listed_by_the_control_plane(
        broker: object, fresh_postgres_url: str, tmp_path: Path) -> None:
    kafka = {"TRUNKPLANE_KAFKA_BOOTSTRAP": broker.bootstrap,  # type: ignore[attr-defined]
             "TRUNKPLANE_KAFKA_TOPIC_PREFIX": "callse2e.", "TRUNKPLANE_KAFKA_PARTITIONS": "2",
             "TRUNKPLANE_KAFKA_REPLICATION": "1", "TRUNKPLANE_WIRE_KEY": f"w1:{WIRE_KEY}"}
    init = subprocess.run([*CLI, "kafka", "init"], env={**os.environ, **kafka},
                          capture_output=True, text=True, timeout=60, check=False)
    assert init.returncode == 0 and "callse2e.calls" in init.stdout, init.stdout + init.stderr
    (tmp_path / "control").mkdir()
    control = Server(tmp_path / "control", "control",
                     TRUNKPLANE_DATABASE_URL=fresh_postgres_url, **kafka)
    control.start()
    far, phone = ThreadedUA(), ThreadedUA()
    pbx_port = free_port()
    agent_log = tmp_path / "agent.log"
    agent = subprocess.Popen([*CLI, "agent"], env=agent_env(tmp_path, kafka, pbx_port),
                             stdout=subprocess.DEVNULL, stderr=agent_log.open("w"))
    try:
        for args in (("trunk", "create", "carrier", "--type", "peer", "--peer",
                      f"127.0.0.1:{far.port}"),
                     ("route", "outbound", "create", "us", "--pattern", "NXXNXXXXXX",
                      "--trunk", "carrier"),
                     ("pbx", "set", "--source", "127.0.0.1", "--reason", "calls e2e")):
            done = control.cli(*args)
            assert done.returncode == 0, done.stderr
        wait_for(lambda: '"state": "ok"' in control.cli("--json", "trunk", "status").stdout,
                 60, "the peer trunk never reported ok", agent_log)

        def answered() -> Any:
            outcome = phone.run(phone.ua.call(("127.0.0.1", pbx_port), "2125551234"))
            return outcome if outcome.code == 200 else None  # 403 until the PBX arrives

        outcome = wait_for(answered, 30, "the call was never answered", agent_log)
        assert phone.run(phone.ua.bye(("127.0.0.1", pbx_port), outcome)).status == 200
        assert far.ua.received("INVITE")[0].uri.startswith("sip:2125551234@127.0.0.1:")

        def listed() -> list[dict[str, Any]]:
            shown = json.loads(control.cli("--json", "calls").stdout)
            return [c for c in shown.get("calls", []) if c.get("final_code") == 200]

        # the agent's record, then the control plane's consumer group (tansu answers a join
        # after about 5 s) and its store: a minute on a loaded machine; the failure shows
        # the control plane's log too
        try:
            calls = wait_for(listed, 60, "no call record reached the control plane", agent_log)
        except AssertionError as missing:
            raise AssertionError(f"{missing}\ncontrol plane: {control.log.read_text()[-3000:]}"
                                 ) from None
        assert [(c["direction"], c["agent_id"], c["number_sent"], c["hangup_by"])
                for c in calls] == [("outbound", "agent-calls", "2125551234", "pbx")]
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            assert agent.wait(timeout=30) == 0, agent_log.read_text()[-3000:]
        finally:
            if agent.poll() is None:
                agent.kill()
            far.close()
            phone.close()
            assert control.stop() == 0
