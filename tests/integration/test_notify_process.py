"""The notifier in a real `trunkplane serve` process, configured with the CLI: killed (SIGKILL)
after the receiver got a notification but before it answered, it sends the notification
again after the restart under the same idempotency key, and decides nothing twice."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import free_port
from tests.integration.test_cli import Server
from tests.receivers import WebhookReceiver

SECRET = "process-hook-secret-0123456789"


@pytest.fixture
def hook(tmp_path: Path) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(tmp_path / "receiver", SECRET, delay=4.0)
    yield receiver
    receiver.close()


def serve(tmp_path: Path, hook: WebhookReceiver) -> Server:
    return Server(tmp_path, TRUNKPLANE_NOTIFY_TICK="0.2", TRUNKPLANE_NOTIFY_RETRY_BASE="0.3",
                  TRUNKPLANE_NOTIFY_RETRY_CAP="1", TRUNKPLANE_NOTIFY_TIMEOUT="10",
                  TRUNKPLANE_NOTIFY_CA=str(hook.cert), TRUNKPLANE_SIP_OPTIONS_INTERVAL="0.3",
                  TRUNKPLANE_SIP_OPTIONS_TIMEOUT="0.3", TRUNKPLANE_SIP_STARTUP_SPREAD="0",
                  TRUNKPLANE_LOG_LEVEL="DEBUG")


def test_killed_between_deciding_and_delivering_delivers_once_per_key(
        tmp_path: Path, hook: WebhookReceiver) -> None:
    server = serve(tmp_path, hook)
    server.start()
    try:
        _configure(server, hook)
        hook.wait(lambda r: len(r.got) >= 1, timeout=30)
    finally:
        server.process.kill()  # SIGKILL: the receiver has it, the store says not delivered
        server.process.wait(timeout=10)
    [first] = hook.got
    assert first.answered == 200 and first.body["type"] == "no_healthy_address"
    hook.delay = 0.0
    server.start()
    try:
        hook.wait(lambda r: len(r.got) >= 2, timeout=30)
        time.sleep(2)  # time for a wrong second decision to show up, if there were one
        listed = json.loads(server.cli("--json", "alerts", "list").stdout)
        channels = server.cli("--json", "alerts", "channel", "list").stdout
        history = server.cli("audit", "list").stdout
        capacity = server.cli("capacity", "--days", "1")
    finally:
        server.stop()
    assert {g.key for g in hook.got} == {first.key}  # the same notification, sent again
    assert list(hook.delivered()) == [first.key]  # a receiver keeps it once
    [note] = listed["notifications"]
    assert note["id"] == first.key
    assert [d["state"] for d in note["deliveries"]] == ["delivered"]
    assert '"secretSet": true' in channels.replace("secret_set", "secretSet")
    assert "ops-hook" in history  # the channel's creation is in the audited history
    assert capacity.returncode == 0, capacity.stderr
    assert "ADVICE (PEAK + 20%)" in capacity.stdout and "carrier" in capacity.stdout
    for text in (channels, history, json.dumps(listed), server.log.read_text()):
        assert SECRET not in text


def _configure(server: Server, hook: WebhookReceiver) -> None:
    added = server.cli("alerts", "channel", "set", "ops-hook", "--webhook", hook.url,
                       "--secret-stdin", "--reason", "on-call hook", stdin=SECRET + "\n")
    assert added.returncode == 0, added.stderr
    assert "(set)" in added.stdout and SECRET not in added.stdout
    rules = server.cli("alerts", "rules", "--set", "no_healthy_address.seconds=1",
                       "--set", "peer_down.enabled=false", "--set", "lag.enabled=false")
    assert rules.returncode == 0, rules.stderr
    assert "no_healthy_address" in rules.stdout
    trunk = server.cli("trunk", "create", "carrier", "--type", "peer", "--peer",
                       f"127.0.0.1:{free_port()}")  # nothing answers there
    assert trunk.returncode == 0, trunk.stderr
