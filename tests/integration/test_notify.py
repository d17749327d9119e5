"""Notifications that reach people, against real receivers on loopback: a registrar that
refuses a trunk (Kamailio), an HTTPS webhook receiver that checks signatures and refuses
its first attempts, an SMTP server with STARTTLS and authentication (aiosmtpd). Thresholds
and intervals are seconds here, scaled down from the minutes they are in production."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest

from domain.alerting import put_channel, update_alert_rules
from domain.model import CommandMeta
from domain.status import AgentHeartbeat, PeerStatus, StatusObservation, TrunkState
from infra.config.settings import NotifySettings
from sipagent.settings import SipSettings
from tests.conftest import Api, settings_for
from tests.integration.helpers import create_trunk, update_trunk, violations
from tests.kamailio import Kamailio
from tests.receivers import SmtpReceiver, WebhookReceiver
from trunkplane.v1 import alert_pb2, alert_pb2_grpc, route_pb2, trunk_pb2

SECRET = "hook-secret-0123456789abcdef"
SMTP_PASSWORD = "smtp-Password-4567"
RIGHT = "Right-Password-1001"
META = CommandMeta(actor="tester")


@dataclass
class Rig:
    api: Api
    hook: WebhookReceiver
    smtp: SmtpReceiver

    def configure(self, rules: dict[str, Any], reminder: int = 3600,
                  email: bool = True) -> None:
        tenant = self.api.settings.tenant
        channels: list[dict[str, Any]] = [
            {"name": "ops-hook", "kind": "webhook", "url": self.hook.url, "secret": SECRET}]
        if email:
            channels.append({"name": "ops-mail", "kind": "email",
                             "smtp_server": f"127.0.0.1:{self.smtp.port}",
                             "username": "notifier", "password": SMTP_PASSWORD,
                             "sender": "trunkplane@example.com",
                             "recipients": ["oncall@example.com"]})
        for channel in channels:
            self.api.plane.bus.run(partial(put_channel, tenant=tenant, raw=channel, meta=META))
        self.api.plane.bus.run(lambda uow: update_alert_rules(uow, tenant, rules, reminder,
                                                              META))

    def kinds(self) -> list[str]:
        return self.hook.kinds()


def sip() -> SipSettings:
    return SipSettings(agent_id="notify-agent", listen_port=0, t1=0.1, startup_spread=0.0,
                       backoff_base=0.3, backoff_max=1.0, options_interval=0.3,
                       options_timeout=0.3, destinations=("127.0.0.0/8",))


def notify_settings(ca: Path) -> NotifySettings:
    return NotifySettings(tick=0.2, retry_base=0.2, retry_cap=0.5, max_attempts=4, timeout=3,
                          ca_file=str(ca))


def make_rig(tmp_path: Path, request: pytest.FixtureRequest,
             agent: SipSettings | None) -> Iterator[Rig]:
    certs = tmp_path / "receivers"
    hook = WebhookReceiver(certs, SECRET, fail_first=2)
    smtp = SmtpReceiver(certs, "notifier", SMTP_PASSWORD)
    settings = replace(settings_for("sqlite", tmp_path, request), sip=agent,
                       notify=notify_settings(hook.cert))
    api = Api(settings)
    try:
        yield Rig(api, hook, smtp)
    finally:
        api.close()
        hook.close()
        smtp.close()


@pytest.fixture
def rig(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    yield from make_rig(tmp_path, request, sip())


@pytest.fixture
def quiet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    """No agent on the wire: the test alone reports status."""
    yield from make_rig(tmp_path, request, None)


def test_a_refused_registration_notifies_once_reminds_and_recovers(
        rig: Rig, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with Kamailio(tmp_path / "kamailio", {"1001": RIGHT}) as kamailio:
        rig.configure({"registration_failed": {"attempts": 2, "seconds": 3},
                       "capacity": {"enabled": False}}, reminder=4)
        trunk = create_trunk(rig.api, "voco", host=f"127.0.0.1:{kamailio.udp}",
                             username="1001", password="Wrong-Password-1001").trunk
        rig.hook.wait(lambda r: "registration_failed" in r.kinds())
        [mail] = rig.smtp.wait(1)
        failed = next(g for g in rig.hook.delivered().values()
                      if g.body["type"] == "registration_failed")
        assert (failed.body["trunk_name"], failed.body["trunk_id"]) == ("voco", trunk.id)
        assert (failed.body["code"], failed.body["reason"]) == (401, "Unauthorized")
        assert failed.body["fix"] and failed.body["since"]
        body = mail.get_payload()
        assert "voco" in body and "401 Unauthorized" in body and "Fix:" in body
        assert "Since:" in body and mail["Subject"].startswith("[trunkplane] Trunk voco")
        attempts = [g for g in rig.hook.got if g.key == failed.key]
        assert [g.answered for g in attempts] == [503, 503, 200]  # retried, one key

        rig.hook.wait(lambda r: any(g.body["title"].startswith("Reminder")
                                    for g in r.delivered().values()), timeout=15)
        update_trunk(rig.api, "voco", trunk_pb2.Trunk(password=RIGHT), ["password"])
        rig.hook.wait(lambda r: "registration_recovered" in r.kinds(), timeout=20)
    kinds = rig.kinds()
    assert kinds.count("registration_failed") >= 2  # the first and its reminder(s)
    assert [k for k in kinds if k != "registration_failed"] == ["registration_recovered"]
    assert kinds[0] == "registration_failed"
    assert all(g.signed for g in rig.hook.got)
    _no_secret_anywhere(rig, caplog.text)


def _no_secret_anywhere(rig: Rig, logs: str) -> None:
    assert SECRET not in logs and SMTP_PASSWORD not in logs
    history = rig.api.plane.views
    with history.transaction() as cur:
        for table in _tables(cur):
            cur.execute(f"SELECT * FROM {table}")  # noqa: S608 - names from the catalog
            text = repr(cur.fetchall())
            assert SECRET not in text and SMTP_PASSWORD not in text, table


def _tables(cur: Any) -> list[str]:
    cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return [str(row[0]) for row in cur.fetchall()]


def observation(trunk_id: str, sequence: int, peers: list[bool]) -> StatusObservation:
    now = datetime.now(UTC)
    up = any(peers)
    return StatusObservation(
        tenant="default", trunk_id=trunk_id, agent_id="flapper", sequence=sequence,
        observed_at=now, state=TrunkState.OK if up else TrunkState.UNREACHABLE, since=now,
        peers=tuple(PeerStatus(f"192.0.2.{i + 10}:5060", p, 1.0 if p else None, now)
                    for i, p in enumerate(peers)))


def test_a_flapping_peer_is_damped(quiet: Rig) -> None:
    rig = quiet
    rig.configure({"peer_down": {"seconds": 2}, "no_healthy_address": {"seconds": 2}},
                  email=False)
    rig.hook.fail_first = 0
    trunk = create_trunk(rig.api, "carrier", type="peer", username="", password="",
                         peer_addresses=["192.0.2.10:5060", "192.0.2.11:5060"]).trunk
    for sequence in range(1, 21):  # down and up every 0.3 s, for 6 s: never 2 s either way
        rig.api.plane.status_sink.publish([observation(trunk.id, sequence,
                                                       [sequence % 2 == 0, True])])
        time.sleep(0.3)
    assert rig.kinds() == []
    rig.api.plane.status_sink.publish([observation(trunk.id, 100, [False, False])])
    rig.hook.wait(lambda r: sorted(r.kinds()) == ["no_healthy_address", "peer_down",
                                                  "peer_down"])
    rig.api.plane.status_sink.publish([observation(trunk.id, 101, [True, True])])
    rig.hook.wait(lambda r: len(r.kinds()) == 6)
    assert sorted(rig.kinds()[3:]) == ["healthy_address", "peer_up", "peer_up"]


def test_a_receiver_down_past_the_retry_limit_is_kept_as_failed(quiet: Rig) -> None:
    rig = quiet
    rig.hook.down = True
    rig.configure({"no_healthy_address": {"seconds": 1}}, email=False)
    trunk = create_trunk(rig.api, "carrier", type="peer", username="", password="",
                         peer_addresses=["192.0.2.10:5060"]).trunk
    rig.api.plane.status_sink.publish([observation(trunk.id, 1, [False])])
    rig.hook.wait(lambda r: len(r.got) >= 4)  # max_attempts
    notifier = rig.api.plane.notifier
    assert notifier is not None
    deadline = time.monotonic() + 10
    while True:
        listed = notifier.listed("default", 10)
        states = [d["state"] for n in listed for d in n["deliveries"]]
        if states == ["failed"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert states == ["failed"]
    assert len(rig.hook.got) == 4 and {g.key for g in rig.hook.got} == {listed[0]["id"]}
    tries = listed[0]["deliveries"][0]["tries"]
    assert [t["outcome"] for t in tries] == ["error"] * 4
    assert "HTTP 503" in tries[0]["detail"]


def test_channels_and_rules_over_grpc_never_return_secrets_and_name_bad_fields(
        rig: Rig) -> None:
    alerts = alert_pb2_grpc.AlertServiceStub(rig.api.channel)
    with pytest.raises(grpc.RpcError) as refused:
        alerts.PutChannel(alert_pb2.PutChannelRequest(channel=alert_pb2.Channel(
            name="bad", kind="webhook", url="http://hooks.example.com/x", secret="short")))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    wrong = violations(refused.value)
    assert set(wrong) == {"channel.url", "channel.secret"}
    assert "https://" in wrong["channel.url"] and "16" in wrong["channel.secret"]
    created = alerts.PutChannel(alert_pb2.PutChannelRequest(channel=alert_pb2.Channel(
        name="ops-hook", kind="webhook", url=rig.hook.url, secret=SECRET)))
    assert (created.secret, created.secret_set, created.enabled) == ("", True, True)
    alerts.PutChannel(alert_pb2.PutChannelRequest(channel=alert_pb2.Channel(
        name="ops-hook", enabled=False)))  # only what is given changes; the secret stays
    [listed] = alerts.ListChannels(alert_pb2.ListChannelsRequest()).channels
    assert (listed.url, listed.secret_set, listed.enabled) == (rig.hook.url, True, False)
    assert SECRET not in str(listed)
    history = rig.api.plane.views
    with history.transaction() as cur:
        cur.execute("SELECT name FROM sqlite_master WHERE name LIKE 'tp_history%'")
        assert cur.fetchall()
    with pytest.raises(grpc.RpcError) as bad_rule:
        alerts.UpdateAlertRules(alert_pb2.UpdateAlertRulesRequest(rules=[
            alert_pb2.AlertRule(alert="capacity", share=1.5),
            alert_pb2.AlertRule(alert="nonsense", enabled=True)]))
    assert set(violations(bad_rule.value)) == {"rules.capacity.share", "rules.nonsense"}
    rules = alerts.UpdateAlertRules(alert_pb2.UpdateAlertRulesRequest(
        rules=[alert_pb2.AlertRule(alert="capacity", share=0.5, seconds=1)],
        reminder_seconds=600))
    capacity = next(r for r in rules.rules if r.alert == "capacity")
    assert (capacity.share, capacity.seconds, capacity.enabled, rules.reminder_seconds) == (
        0.5, 1, True, 600)


def test_capacity_report_and_the_capacity_alert(quiet: Rig) -> None:
    rig = quiet
    rig.configure({"capacity": {"share": 0.5, "seconds": 1}}, email=False)
    rig.hook.fail_first = 0
    trunk = create_trunk(rig.api, "voco", call_limits=trunk_pb2.CallLimits(
        max_concurrent_calls=10)).trunk
    now = datetime.now(UTC)
    for sequence, calls in enumerate((2, 7, 6, 3), start=1):
        rig.api.plane.status_sink.publish([StatusObservation(
            tenant="default", trunk_id=trunk.id, agent_id="a1", sequence=sequence,
            observed_at=now, state=TrunkState.REGISTERED, since=now,
            active_outbound=calls)])
        time.sleep(0.8 if calls >= 5 else 0.1)
    rig.hook.wait(lambda r: r.kinds() == ["capacity_high", "capacity_normal"])
    alerts = alert_pb2_grpc.AlertServiceStub(rig.api.channel)
    [row] = alerts.GetCapacityReport(alert_pb2.GetCapacityReportRequest(days=1)).rows
    assert (row.trunk_name, row.day, row.peak_calls, row.limit, row.advice) == (
        "voco", now.date().isoformat(), 7, 10, 9)


def test_channels_and_rules_travel_in_the_backup_with_secrets_sealed(
        quiet: Rig, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    quiet.configure({"no_healthy_address": {"seconds": 1}}, reminder=900)
    create_trunk(quiet.api, "carrier", type="peer", username="", password="",
                 peer_addresses=["192.0.2.10:5060"])
    plain = quiet.api.trunks.ExportConfiguration(trunk_pb2.ExportConfigurationRequest()).json
    sealed = quiet.api.trunks.ExportConfiguration(trunk_pb2.ExportConfigurationRequest(
        with_secrets=True, passphrase="a long passphrase for the test")).json
    for document in (plain, sealed):
        assert SECRET not in document and SMTP_PASSWORD not in document
        assert '"ops-hook"' in document and '"reminder_seconds": 900' in document
    assert "secret_sealed" in sealed and "secret_sealed" not in plain

    settings = replace(settings_for("sqlite", tmp_path / "restored", request),
                       notify=notify_settings(quiet.hook.cert))
    restored = Api(settings)
    try:
        restored.trunks.ImportConfiguration(trunk_pb2.ImportConfigurationRequest(
            json=sealed, passphrase="a long passphrase for the test"))
        alerts = alert_pb2_grpc.AlertServiceStub(restored.channel)
        channels = alerts.ListChannels(alert_pb2.ListChannelsRequest()).channels
        assert sorted((c.name, c.secret_set or c.password_set) for c in channels) == [
            ("ops-hook", True), ("ops-mail", True)]
        carrier = restored.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="carrier"))
        quiet.hook.fail_first = 0
        restored.plane.status_sink.publish([observation(carrier.id, 1, [False])])
        quiet.hook.wait(lambda r: r.kinds() == ["no_healthy_address"])
        [mail] = quiet.smtp.wait(1)  # the SMTP password came back too: it logged in
    finally:
        restored.close()
    assert all(g.signed for g in quiet.hook.got)  # signed with the restored secret
    assert "carrier" in mail["Subject"]


def test_fraud_alerts_silent_agents_and_an_edited_log_notify(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    certs = tmp_path / "receivers"
    hook = WebhookReceiver(certs, SECRET)
    settings = replace(settings_for("sqlite", tmp_path, request),
                       notify=replace(notify_settings(hook.cert), audit_interval=0.5))
    api = Api(settings)
    try:
        rig = Rig(api, hook, SmtpReceiver(certs, "notifier", SMTP_PASSWORD))
        rig.configure({"agent_silent": {"seconds": 30}, "lag": {"enabled": False}},
                      email=False)
        api.routes.RecordFraudAlert(route_pb2.RecordFraudAlertRequest(
            kind="burst", detail="40 calls in a minute from extension 1001",
            extension="1001", route_id="US"))
        hook.wait(lambda r: "fraud_alert" in r.kinds())
        long_ago = datetime.now(UTC) - timedelta(minutes=5)
        api.plane.status_sink.announce(AgentHeartbeat(
            agent_id="agent-gone", address="127.0.0.1:1", tenants=("default",),
            observed_at=long_ago, started_at=long_ago))
        hook.wait(lambda r: "agent_silent" in r.kinds())
        with sqlite3.connect(settings.data_dir / "events.sqlite") as connection:
            connection.execute("UPDATE stored_events SET state = ? WHERE rowid = 1",
                               (b"edited behind the service's back",))
        hook.wait(lambda r: "audit_tampered" in r.kinds())
        time.sleep(1.5)  # more audits pass: the same edit does not notify again
    finally:
        api.close()
        hook.close()
        rig.smtp.close()
    bodies = {g.body["type"]: g.body for g in hook.delivered().values()}
    assert "40 calls in a minute" in bodies["fraud_alert"]["detail"]
    assert bodies["agent_silent"]["agent_id"] == "agent-gone"
    assert "position 1" in bodies["audit_tampered"]["title"]
    assert hook.kinds().count("audit_tampered") == 1


def test_views_lagging_behind_the_log_notify_and_catching_up_clears(quiet: Rig) -> None:
    quiet.hook.fail_first = 0
    quiet.configure({"lag": {"events": 1, "seconds": 1}}, email=False)
    quiet.api.plane.runner.stop()  # the views stop reading the log; the writes go on
    try:
        quiet.api.plane.bus.run(partial(update_alert_rules, tenant="default",
                                        rules={"fraud": {"enabled": True}},
                                        reminder_seconds=1800, meta=META))
        quiet.hook.wait(lambda r: "lag_high" in r.kinds())
    finally:
        quiet.api.plane.runner.start()
    quiet.hook.wait(lambda r: "lag_normal" in r.kinds())
    high = next(g.body for g in quiet.hook.delivered().values() if g.body["type"] == "lag_high")
    assert high["behind"] >= 1 and high["view"]
