"""One contract for both EventFeed implementations (the store's notification log, and a
Kafka consumer group fed by the relay) and for both status paths (in-process, and the
status topic), against a real Kafka-protocol broker and real stores."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from domain import commands
from domain.feeds import PUBLISHED, EventFeed, FeedItem, MemoryPositions, StoreEventFeed
from domain.model import CommandMeta
from domain.status import StatusObservation, TrunkState
from infra.app.control import build_app
from infra.config.settings import KafkaSettings, Settings
from infra.messaging.codec import AvroCodec
from infra.messaging.feeds import KafkaEventFeed, KafkaStatusFeed, KafkaStatusSink, StatusPump
from infra.messaging.relay import DatabasePositions, Relay
from infra.security.sealing import WireCipher
from projections.db import SqliteDatabase
from projections.status import StatusView
from sipagent.state import AgentState
from tests.conftest import settings_for

PASSWORD = "Feed-Secret-Password-77"
META = CommandMeta(actor="alice@example.com", reason="feed test", request_id="")
GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


class Rig:
    """A store with commands, and feeds of one implementation over it."""

    def __init__(self, kind: str, settings: Settings, kafka: KafkaSettings | None) -> None:
        self.kind = kind
        self.app = build_app(settings)
        self.kafka = kafka
        self.positions = DatabasePositions(SqliteDatabase(settings.data_dir / "feeds.sqlite"))
        self.codec = AvroCodec(WireCipher(kafka.wire_key)) if kafka else AvroCodec(None)
        self.relay = Relay(self.app, self.codec, kafka, MemoryPositions()) if kafka else None
        self.feeds: list[EventFeed] = []

    def create(self, tenant: str, name: str) -> None:
        self.app.execute(partial(
            commands.create_trunk, tenant=tenant, template="", meta=META, raw={
                "name": name, "type": "register", "host": "sip.example.com",
                "username": "1001", "password": PASSWORD, "codecs": ["PCMU"]})).unwrap()

    def update(self, tenant: str, name: str, **patch: Any) -> None:
        self.app.execute(partial(commands.update_trunk, tenant=tenant, ref=name, patch=patch,
                                 etag="", meta=META)).unwrap()

    def publish(self) -> None:
        if self.relay is not None:
            while self.relay.publish_once():
                pass

    def published(self) -> list[tuple[int, Any]]:
        notes = self.app.recorder.select_notifications(0, 100000)
        return [(n.id, e) for n in notes
                if type(e := self.app.mapper.to_domain_event(n)) in PUBLISHED]

    def feed(self, name: str) -> EventFeed:
        feed: EventFeed
        if self.kafka is None:
            feed = StoreEventFeed(self.app, name, self.positions)
        else:
            feed = KafkaEventFeed(self.kafka, name, self.codec, **GROUP_TIMEOUTS)
        self.feeds.append(feed)
        return feed

    def close(self) -> None:
        for feed in self.feeds:
            feed.close()
        self.app.close()


@pytest.fixture(params=["store", "kafka"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    kafka = request.getfixturevalue("kafka") if request.param == "kafka" else None
    settings = settings_for("sqlite", tmp_path, request)
    made = Rig(request.param, settings, kafka)
    yield made
    made.close()


def drain(feed: EventFeed, count: int, timeout: float = 30.0) -> list[FeedItem]:
    items: list[FeedItem] = []
    deadline = time.monotonic() + timeout
    while len(items) < count and time.monotonic() < deadline:
        items += feed.read(timeout=0.5)
    return items


def populate(rig: Rig) -> None:
    for tenant in ("acme", "globex", "initech"):
        rig.create(tenant, "primary")
        rig.create(tenant, "backup")
        rig.update(tenant, "primary", codecs=["PCMA", "PCMU"])
        rig.update(tenant, "backup", enabled=False)
    rig.publish()


def test_every_event_arrives_in_order_per_tenant_with_its_password(rig: Rig) -> None:
    populate(rig)
    expected = rig.published()
    items = drain(rig.feed("agents"), len(expected))
    assert sorted(i.position for i in items) == [p for p, _ in expected]
    stored = dict(expected)
    for item in items:
        assert item.event == stored[item.position]  # the same domain event, decoded
    for tenant in ("acme", "globex", "initech"):
        positions = [i.position for i in items if i.tenant == tenant]
        assert positions == sorted(positions) and len(positions) == 4
    created = [i.event for i in items if type(i.event).__name__ == "Created"]
    assert {e.settings["password"] for e in created} == {PASSWORD}


def test_a_feed_waits_for_more_then_returns_it(rig: Rig) -> None:
    rig.create("acme", "primary")
    rig.publish()
    feed = rig.feed("agents")
    assert len(drain(feed, 1)) == 1
    assert feed.read(timeout=0.3) == []
    rig.create("acme", "backup")
    rig.publish()
    later = drain(feed, 1)
    assert [i.event.settings["name"] for i in later] == ["backup"]


def test_a_reopened_feed_resumes_after_what_was_committed(rig: Rig) -> None:
    populate(rig)
    first = rig.feed("agents")
    seen = drain(first, 12)
    assert len(seen) == 12
    first.commit()
    first.close()
    rig.create("acme", "third")
    rig.publish()
    again = rig.feed("agents")
    rest = drain(again, 1)
    assert [i.event.settings["name"] for i in rest] == ["third"]
    assert again.read(timeout=1.0) == []


def test_uncommitted_events_come_again_and_are_applied_once(rig: Rig) -> None:
    populate(rig)
    state = AgentState()
    first = rig.feed("agents")
    assert state.apply(drain(first, 12)) == 12
    first.close()  # no commit: a crash before the consumer recorded its progress
    again = rig.feed("agents")
    redelivered = drain(again, 12)
    assert len(redelivered) == 12
    assert state.apply(redelivered) == 0 and state.skipped == 12
    acme = state.tenant("acme")
    assert acme is not None
    assert sorted(t["name"] for t in acme.trunks.values()) == ["backup", "primary"]
    assert {t["name"]: t["enabled"] for t in acme.trunks.values()} == {
        "primary": True, "backup": False}


# --- status ------------------------------------------------------------------------------

def observation(sequence: int, state: TrunkState, agent: str = "agent-1") -> StatusObservation:
    at = datetime(2026, 11, 26, 12, 0, sequence, tzinfo=UTC)
    return StatusObservation(tenant="acme", trunk_id="trunk-1", agent_id=agent,
                             sequence=sequence, observed_at=at, state=state, since=at,
                             sip_code=200 if state == TrunkState.REGISTERED else 0,
                             reason="OK" if state == TrunkState.REGISTERED else "")


@pytest.mark.parametrize("path", ["in-process", "kafka"])
def test_observations_reach_the_status_view_once(path: str, request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    view = StatusView(SqliteDatabase(tmp_path / "views.sqlite"))
    pump = None
    sink: Any = view
    if path == "kafka":
        kafka: KafkaSettings = request.getfixturevalue("kafka")
        codec = AvroCodec(WireCipher(kafka.wire_key))
        sink = KafkaStatusSink(kafka, codec)
        pump = StatusPump(KafkaStatusFeed(kafka, "control", codec, **GROUP_TIMEOUTS),
                          view.publish)
        pump.start()
    try:
        sink.publish([observation(1, TrunkState.REGISTERING)])
        sink.publish([observation(2, TrunkState.REGISTERED)])
        sink.publish([observation(2, TrunkState.REGISTERED)])  # redelivered
        sink.publish([observation(1, TrunkState.REGISTERING)])  # late
        deadline = time.monotonic() + 30
        while len(view.changes_after("acme", 0)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5 if pump else 0)  # room for a wrong third change to show up
        changes = [doc["state"] for _, doc in view.changes_after("acme", 0)]
        assert changes == ["registering", "registered"]
        assert view.of("acme", ["trunk-1"])["trunk-1"]["sip_code"] == 200
    finally:
        if pump is not None:
            pump.stop()
            sink.close()



def test_a_status_pump_whose_view_fails_writes_the_batch_again(kafka: KafkaSettings,
                                                               tmp_path: Path) -> None:
    """The store away (a PostgreSQL restart, say) is retried like the broker away; the
    pump's thread died of it, and the view was never updated again."""
    codec = AvroCodec(WireCipher(kafka.wire_key))
    view = StatusView(SqliteDatabase(tmp_path / "views.sqlite"))
    failures = [OSError("view away")] * 2

    def flaky(observations: Sequence[StatusObservation]) -> None:
        if failures:
            raise failures.pop()
        view.publish(observations)

    sink = KafkaStatusSink(kafka, codec)
    pump = StatusPump(KafkaStatusFeed(kafka, "flaky-control", codec, **GROUP_TIMEOUTS), flaky)
    pump.start()
    try:
        sink.publish([observation(1, TrunkState.REGISTERING)])
        deadline = time.monotonic() + 40
        while len(view.changes_after("acme", 0)) < 1:
            assert time.monotonic() < deadline, failures
            time.sleep(0.1)
        sink.publish([observation(2, TrunkState.REGISTERED)])
        while len(view.changes_after("acme", 0)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        pump.stop()
        sink.close()
    assert failures == [] and pump.stored == 2
    assert [doc["state"] for _, doc in view.changes_after("acme", 0)] == [
        "registering", "registered"]
