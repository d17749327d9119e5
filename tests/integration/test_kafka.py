"""The distributed mode against a real Kafka-protocol broker and PostgreSQL: the relay
survives a crash between publish and position commit, and a broker outage; bad records go
to the dead-letter topic; agents in one group split and hand over tenants."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from domain import commands
from domain.application import TrunkplaneApp
from domain.feeds import PUBLISHED, FeedItem, MemoryPositions
from domain.model import CommandMeta
from infra.app.control import build_app
from infra.config.settings import KafkaSettings, Settings
from infra.messaging.codec import AvroCodec
from infra.messaging.feeds import KafkaEventFeed
from infra.messaging.relay import Relay
from infra.messaging.topics import (
    LazyProducer,
    Outgoing,
    init_topics,
    partition_of,
    producer,
    scan_topic,
)
from infra.security.sealing import WireCipher
from sipagent.runner import AgentRunner
from sipagent.state import AgentState
from tests.brokers import Broker, Proxy, free_port
from tests.conftest import CIPHER_KEY

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Kafka-Secret-Password-31"
META = CommandMeta(actor="alice@example.com", reason="kafka test", request_id="")
GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def create(app: TrunkplaneApp, tenant: str, name: str) -> None:
    app.execute(partial(commands.create_trunk, tenant=tenant, template="", meta=META, raw={
        "name": name, "type": "register", "host": "sip.example.com", "username": "1001",
        "password": PASSWORD, "codecs": ["PCMU"]})).unwrap()


def published(app: TrunkplaneApp) -> list[int]:
    return [n.id for n in app.recorder.select_notifications(0, 1_000_000)
            if type(app.mapper.to_domain_event(n)) in PUBLISHED]


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record of a topic, by partition and offset, with no consumer group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        return scan_topic(consumer, topic, timeout=60, quiet_polls=3, poll_ms=500)
    finally:
        consumer.close()


@pytest.fixture
def pg_settings(fresh_postgres_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", database_url=fresh_postgres_url,
                    cipher_key=CIPHER_KEY, listen="127.0.0.1:0", log_level="WARNING")


def test_a_relay_killed_between_publish_and_commit_loses_nothing(
        kafka: KafkaSettings, pg_settings: Settings, tmp_path: Path) -> None:
    app = build_app(pg_settings)
    for number in range(150):
        create(app, f"tenant-{number % 7}", f"trunk-{number}")
    expected = published(app)
    run = [sys.executable, "-m", "tests.integration.relay_process",
           "--database", pg_settings.database_url, "--bootstrap", kafka.bootstrap,
           "--prefix", kafka.topic_prefix, "--wire-key", kafka.wire_key,
           "--data", str(tmp_path / "var"), "--batch", "100"]
    crashed = subprocess.run([*run, "--crash-after", "2"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert crashed.returncode == 9, crashed.stderr  # died after the 2nd batch was acked
    finished = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert int(finished.stdout) == app.head()

    codec = AvroCodec(WireCipher(kafka.wire_key))
    records = read_topic(kafka.bootstrap, kafka.events_topic)
    decoded = [codec.decode(r.value) for r in records]
    positions = [d.position for d in decoded]
    assert set(positions) == set(expected)  # every event arrived
    assert len(positions) > len(expected)  # the unrecorded batch went out twice
    by_tenant: dict[str, list[int]] = {}
    for record, d in zip(records, decoded, strict=True):
        assert record.key == d.tenant.encode()
        assert record.partition == partition_of(record.key, list(range(4)))
        by_tenant.setdefault(d.tenant, []).append(d.position)
    for tenant_positions in by_tenant.values():
        first_seen = list(dict.fromkeys(tenant_positions))
        assert first_seen == sorted(first_seen)  # in order per tenant
    state = AgentState()
    applied = state.apply([FeedItem(d.position, d.tenant, d.value) for d in decoded])
    assert applied == len(expected) and state.skipped == len(positions) - len(expected)
    assert state.trunk_count() == 150
    app.close()


def test_commands_are_accepted_while_the_broker_is_away_and_relayed_after(
        tmp_path: Path, pg_settings: Settings) -> None:
    proxy_port = free_port()
    with Broker(tmp_path / "tansu.log", advertise=proxy_port) as broker:
        proxy = Proxy(broker.port, proxy_port)
        kafka = KafkaSettings(bootstrap=f"127.0.0.1:{proxy_port}", topic_prefix="outage.",
                              partitions=4, replication=1, wire_key=f"w1:{WireCipher.new_key()}")
        init_topics(kafka)
        app = build_app(pg_settings)
        relay = Relay(app, AvroCodec(WireCipher(kafka.wire_key)), kafka, MemoryPositions())
        relay.start()
        try:
            create(app, "acme", "before")
            relay.notify()
            deadline = time.monotonic() + 20
            while relay.position < app.head() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert relay.position == app.head()
            proxy.cut()
            for number in range(20):
                create(app, "acme", f"during-{number}")  # the store takes them
            relay.notify()
            deadline = time.monotonic() + 40
            while not relay.last_error:  # it notices that the broker is away, and says so
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert relay.position < app.head()
            proxy.restore()
            deadline = time.monotonic() + 60
            while relay.position < app.head() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert relay.position == app.head()
            codec = AvroCodec(WireCipher(kafka.wire_key))
            positions = {codec.decode(r.value).position
                         for r in read_topic(kafka.bootstrap, kafka.events_topic)}
            assert positions == set(published(app))
        finally:
            relay.stop()
            proxy.close()
            app.close()


def test_a_publisher_gets_a_new_producer_after_a_failed_delivery(tmp_path: Path) -> None:
    """Every publisher's producer (state, status, calls, dead letters, relay): a delivery
    the broker did not acknowledge drops it, the next one builds another; close twice."""
    proxy_port = free_port()
    with Broker(tmp_path / "tansu.log", advertise=proxy_port) as broker:
        proxy = Proxy(broker.port, proxy_port)
        kafka = KafkaSettings(bootstrap=f"127.0.0.1:{proxy_port}", topic_prefix="lazy.",
                              partitions=4, replication=1)
        init_topics(kafka)
        lazy = LazyProducer(lambda: producer(kafka, "test-lazy"))
        try:
            assert lazy.deliver(kafka.calls_topic, [Outgoing(b"acme", b"one")], 10) == 1
            first = lazy.get()
            proxy.cut()
            with pytest.raises(KafkaError):
                lazy.deliver(kafka.calls_topic, [Outgoing(b"acme", b"lost")], timeout=2)
            proxy.restore()
            assert lazy.deliver(kafka.calls_topic, [Outgoing(b"acme", b"two")], 30) == 1
            assert lazy.get() is not first and lazy.built == 2
            values = [r.value for r in read_topic(kafka.bootstrap, kafka.calls_topic)]
            assert b"one" in values and b"two" in values
        finally:
            lazy.close()
            lazy.close()
            proxy.close()


def between(kafka: KafkaSettings, tmp_path: Path,
            raw: Callable[[TrunkplaneApp, AvroCodec], list[bytes | None]]
            ) -> tuple[TrunkplaneApp, AvroCodec]:
    """The events topic with trunk "first" relayed, then the records `raw` makes (given the
    app and the codec) written straight to it, then trunk "second" relayed."""
    settings = Settings(data_dir=tmp_path / "var", database_url="", cipher_key=CIPHER_KEY,
                        listen="127.0.0.1:0", log_level="WARNING")
    app = build_app(settings)
    codec = AvroCodec(WireCipher(kafka.wire_key))
    relay = Relay(app, codec, kafka, MemoryPositions())
    create(app, "acme", "first")
    relay.publish_once()
    sender = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    for payload in raw(app, codec):
        sender.send(kafka.events_topic, key=b"acme", value=payload)
    sender.flush()
    sender.close()
    create(app, "acme", "second")
    relay.publish_once()
    return app, codec


def read_until(feed: KafkaEventFeed, items: list[Any], count: int = 2,
               commit: bool = False) -> list[str]:
    """Reads on (committing each read with `commit`) until `count` items; their names."""
    deadline = time.monotonic() + 30
    while len(items) < count and time.monotonic() < deadline:
        items += feed.read(timeout=0.5)
        if commit:
            feed.commit()
    return [i.event.settings["name"] for i in items]


def test_undecodable_records_go_to_the_dead_letter_topic_and_reading_goes_on(
        kafka: KafkaSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    garbage: list[bytes | None] = []

    def bad(app: TrunkplaneApp, codec: AvroCodec) -> list[bytes | None]:
        first = next(e for n in app.recorder.select_notifications(0, 10)
                     if type(e := app.mapper.to_domain_event(n)) in PUBLISHED)
        garbage.extend([b"not avro at all", b"\xc3\x01" + b"\x13" * 8 + b"body",
                        codec.encode_event(first, 1, "acme")[:-12]])
        return garbage

    app, codec = between(kafka, tmp_path, bad)
    feed = KafkaEventFeed(kafka, "agents", codec, **GROUP_TIMEOUTS)
    assert read_until(feed, []) == ["first", "second"]
    assert feed.dead_letters == 3
    letters = read_topic(kafka.bootstrap, kafka.dead_letters(kafka.events_topic))
    assert [r.value for r in letters] == garbage
    headers = dict(letters[1].headers)
    assert headers["topic"] == kafka.events_topic.encode()
    assert b"unknown writer schema fingerprint 1313131313131313" in headers["error"]
    assert int(headers["offset"]) >= 0 and int(headers["partition"]) in range(4)
    assert any("undecodable record at " + kafka.events_topic + " partition" in r.message
               for r in caplog.records)
    feed.close()
    app.close()


def test_a_record_with_no_value_goes_to_the_dead_letters_too(
        kafka: KafkaSettings, tmp_path: Path) -> None:
    """A null value (a tombstone someone wrote to the events topic) is not an Avro error:
    it must be moved aside like one, not stop the feed on that poll for ever."""
    app, codec = between(kafka, tmp_path, lambda app, codec: [None])
    feed = KafkaEventFeed(kafka, "agents-null", codec, **GROUP_TIMEOUTS)
    assert read_until(feed, []) == ["first", "second"]
    assert feed.dead_letters == 1
    feed.close()
    app.close()


def test_a_record_that_cannot_reach_the_dead_letters_keeps_its_whole_poll(
        kafka: KafkaSettings, tmp_path: Path) -> None:
    """Moving a bad record to the dead-letter topic failed (the broker away): the poll's
    good records, the one before it included, are read again, not skipped for good."""
    app, codec = between(kafka, tmp_path, lambda app, codec: [b"not avro at all"])
    feed = KafkaEventFeed(kafka, "agents-letters", codec, **GROUP_TIMEOUTS)

    def away() -> Any:
        raise KafkaError("broker away")

    feed._letters = LazyProducer(away)
    items: list[Any] = []  # a poll before the bad record's may bring "first" on its own
    failed = False
    deadline = time.monotonic() + 30
    while not failed and time.monotonic() < deadline:
        try:
            items += feed.read(timeout=0.5)
        except KafkaError:
            failed = True
    assert failed, "the dead-letter delivery never failed"
    feed._letters = LazyProducer(lambda: producer(kafka, "test-dead-letters"))
    assert read_until(feed, items, commit=True) == ["first", "second"]
    assert feed.dead_letters == 1
    feed.close()
    app.close()


def test_a_member_dropped_from_its_group_takes_its_partitions_back_as_new(
        kafka: KafkaSettings) -> None:
    """A member that stopped polling past the interval (paused) is dropped from the group;
    while it was away another may have owned its partitions. Given them back, it must load
    them afresh (from the state topic, then the events), not resume from the successor's
    commit onto its stale tables."""
    codec = AvroCodec(WireCipher(kafka.wire_key))
    assigned: list[list[int]] = []
    lost: list[list[int]] = []
    started: list[list[int]] = []

    def start_at(partitions: list[int]) -> dict[int, int]:
        started.append(sorted(partitions))
        return {}

    feed = KafkaEventFeed(kafka, "agents-paused", codec, from_start=True, start_at=start_at,
                          on_assigned=lambda held, new: assigned.append(new),
                          on_lost=lost.append, session_timeout_ms=2000,
                          heartbeat_interval_ms=500, max_poll_interval_ms=2000)
    try:
        deadline = time.monotonic() + 30
        while not assigned and time.monotonic() < deadline:
            feed.read(timeout=0.5)
        assert assigned and assigned[0], "never assigned"
        everything = assigned[0]
        time.sleep(4)  # no poll past max_poll_interval: the member leaves the group
        deadline = time.monotonic() + 30
        while len(assigned) < 2 and time.monotonic() < deadline:
            feed.read(timeout=0.5)
        assert lost == [everything]
        assert assigned[1] == everything  # new again, not resumed
        assert started == [everything, everything]
    finally:
        feed.close()


def test_two_agents_split_the_tenants_and_one_takes_over_when_the_other_stops(
        kafka: KafkaSettings, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url="", cipher_key=CIPHER_KEY,
                        listen="127.0.0.1:0", log_level="WARNING")
    app = build_app(settings)
    codec = AvroCodec(WireCipher(kafka.wire_key))
    tenants = [f"tenant-{n}" for n in range(12)]
    for tenant in tenants:
        create(app, tenant, "primary")
        create(app, tenant, "backup")
    relay = Relay(app, codec, kafka, MemoryPositions())
    relay.publish_once()

    def agent(name: str) -> AgentRunner:
        state = AgentState()
        feed = KafkaEventFeed(kafka, "agents", codec, from_start=True, client_id=name,
                              on_revoked=state.revoked, **GROUP_TIMEOUTS)

        def assigned(held: list[int], new: list[int]) -> None:
            state.assigned(held)  # keeps what it held before, releases what moved

        feed.on_assigned = assigned
        runner = AgentRunner(feed, state, name)
        runner.start()
        return runner

    first = agent("agent-a")
    second = agent("agent-b")

    def settled(*runners: AgentRunner) -> bool:
        owned = [set(r.state.tenants()) for r in runners]
        union = set().union(*owned)
        return union == set(tenants) and sum(len(o) for o in owned) == len(tenants)

    deadline = time.monotonic() + 45
    while not (settled(first, second) and first.state.tenants() and second.state.tenants()):
        assert time.monotonic() < deadline, (first.state.tenants(), second.state.tenants())
        time.sleep(0.2)
    assert first.state.trunk_count() + second.state.trunk_count() == 24
    moved = set(first.state.tenants())
    first.stop()  # leaves the group: its partitions go to the other agent
    deadline = time.monotonic() + 45
    while set(second.state.tenants()) != set(tenants):
        assert time.monotonic() < deadline, second.state.tenants()
        time.sleep(0.2)
    for tenant in moved:  # rebuilt from the log, passwords included
        state = second.state.tenant(tenant)
        assert state is not None
        assert sorted(t["name"] for t in state.trunks.values()) == ["backup", "primary"]
        assert {t["password"] for t in state.trunks.values()} == {PASSWORD}
    create(app, tenants[0], "third")  # and it follows new events of the moved tenants
    relay.publish_once()
    deadline = time.monotonic() + 30
    while second.state.trunk_count() < 25:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    second.stop()
    app.close()


def test_a_new_owner_learns_the_calls_in_progress_from_the_status_topic(
        kafka: KafkaSettings) -> None:
    from datetime import UTC, datetime

    from domain.status import StatusObservation, TrunkState
    from infra.messaging.feeds import KafkaStatusSink, seed_from_status

    codec = AvroCodec(WireCipher(kafka.wire_key))
    sink = KafkaStatusSink(kafka, codec)
    now = datetime.now(UTC)

    def seen(tenant: str, trunk: str, sequence: int, inbound: int, outbound: int,
             agent: str = "agent-a") -> StatusObservation:
        return StatusObservation(tenant=tenant, trunk_id=trunk, agent_id=agent,
                                 sequence=sequence, observed_at=now.replace(
                                     microsecond=sequence), state=TrunkState.OK, since=now,
                                 active_inbound=inbound, active_outbound=outbound)

    sink.publish([seen("acme", "t1", 1, 0, 5), seen("acme", "t1", 2, 1, 3),  # newest wins
                  seen("acme", "t2", 1, 0, 0), seen("globex", "t3", 1, 2, 0)])
    sink.close()
    partitions = list(range(4))
    acme = partition_of(b"acme", partitions)
    seeded: list[tuple[str, str, int, int]] = []
    count = seed_from_status(kafka, codec, [acme], lambda *a: seeded.append(a), ttl=120)
    expected = [("acme", "t1", 1, 3)]
    if partition_of(b"globex", partitions) == acme:
        expected.append(("globex", "t3", 2, 0))
    assert sorted(seeded) == sorted(expected) and count == len(expected)
    assert seed_from_status(kafka, codec, [acme], lambda *a: None, ttl=0) == 0  # too old


def test_the_seed_reads_only_what_the_broker_took_within_the_lease_ttl(
        kafka: KafkaSettings) -> None:
    """The take-over's status scan starts where the broker's records reach back one lease
    TTL, not at the topic's start: records taken before that are not read at all (these
    claim to be recent, so no age filter would have dropped them), both on a partition
    with newer records and on one with nothing newer."""
    from datetime import UTC, datetime, timedelta

    from domain.status import StatusObservation, TrunkState
    from infra.messaging.feeds import KafkaStatusSink, seed_from_status

    codec = AvroCodec(WireCipher(kafka.wire_key))
    sink = KafkaStatusSink(kafka, codec)
    later = datetime.now(UTC) + timedelta(hours=1)  # ages no filter would drop

    def seen(trunk: str, outbound: int) -> StatusObservation:
        return StatusObservation(tenant="acme", trunk_id=trunk, agent_id="agent-a",
                                 sequence=1, observed_at=later, state=TrunkState.OK,
                                 since=later, active_inbound=0, active_outbound=outbound)

    status = list(range(kafka.partitions))
    names = [f"trunk-{n}" for n in range(100)]
    recent = names[0]
    beside = next(n for n in names[1:]  # old, on the partition of the recent one
                  if partition_of(n.encode(), status) == partition_of(recent.encode(), status))
    alone = next(n for n in names[1:]  # old, on a partition with nothing newer
                 if partition_of(n.encode(), status) != partition_of(recent.encode(), status))
    sink.publish([seen(beside, 2), seen(alone, 3)])
    # a margin on each side of the boundary: the time the broker stores a batch under is
    # its own, a moment after its acknowledgement on a loaded machine (one failed run of
    # the whole suite read an old record taken just before a boundary with no margin)
    time.sleep(1.5)
    boundary = time.time()
    time.sleep(1.5)
    sink.publish([seen(recent, 1)])
    sink.close()
    every = list(range(kafka.partitions))
    seeded: list[tuple[str, str, int, int]] = []
    # the window reaches back to the boundary: only the recent record is read
    count = seed_from_status(kafka, codec, every, lambda *a: seeded.append(a),
                             ttl=time.time() - boundary, skew=0)
    assert seeded == [("acme", recent, 0, 1)] and count == 1
    seeded.clear()  # a window reaching past the old records reads them too
    seed_from_status(kafka, codec, every, lambda *a: seeded.append(a), ttl=600, skew=0)
    assert sorted(seeded) == sorted([("acme", recent, 0, 1), ("acme", beside, 0, 2),
                                     ("acme", alone, 0, 3)])
