"""Call records and PBX access in the distributed mode, against a real Kafka-protocol broker
(tansu) and the control plane's store on PostgreSQL and SQLite."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from prometheus_client import generate_latest

from domain import commands
from domain.application import TrunkplaneApp
from domain.feeds import FeedItem, MemoryPositions
from domain.model import CommandMeta
from infra.config.settings import KafkaSettings
from infra.messaging.calls import CallPump, KafkaCallFeed, KafkaCallSink
from infra.messaging.codec import AvroCodec
from infra.messaging.relay import Relay
from infra.ops.metrics import Metrics
from infra.security.sealing import WireCipher
from projections.calls import CallQuery, CallStore
from projections.db import Database, SqliteDatabase
from sipagent.call_records import QueuedCallSink
from sipagent.state import AgentState
from tests.integration.test_call_store import call
from tests.integration.test_kafka import GROUP_TIMEOUTS, read_topic

SECRET = "pbx-digest-secret-on-the-wire"
META = CommandMeta(actor="alice", reason="kafka test", request_id="")


def wait_until(check: object, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_kafka_init_creates_the_calls_topic(kafka: KafkaSettings) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    try:
        topics = set(admin.list_topics())
    finally:
        admin.close()
    assert {kafka.calls_topic, kafka.dead_letters(kafka.calls_topic)} <= topics


def test_records_go_through_the_calls_topic_into_the_store_once(
        kafka: KafkaSettings, db: Database) -> None:
    codec = AvroCodec(WireCipher(kafka.wire_key))
    publisher = KafkaCallSink(kafka, codec)
    sink = QueuedCallSink(publisher.publish)
    records = [call(n, tenant=f"tenant-{n % 3}") for n in range(30)]
    for record in records:
        sink.record(record)
    assert sink.flush() == 30
    garbage = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    garbage.send(kafka.calls_topic, key=b"tenant-0", value=b"not avro")
    garbage.flush()
    garbage.close()
    for record in records[:10]:  # redelivered: the agent retried a batch the broker had
        sink.record(record)
    sink.flush()
    publisher.close()

    store = CallStore(db)
    feed = KafkaCallFeed(kafka, "control-calls", codec, **GROUP_TIMEOUTS)
    pump = CallPump(feed, store.record)
    pump.start()
    try:
        wait_until(lambda: pump.stored >= 40)
    finally:
        pump.stop()
    for tenant in ("tenant-0", "tenant-1", "tenant-2"):
        page, _ = store.page(CallQuery(tenant=tenant), page_size=100)
        assert sorted(page, key=lambda r: r.call_id) == sorted(
            (r for r in records if r.tenant == tenant), key=lambda r: r.call_id)
    assert feed.dead_letters == 1
    metrics = Metrics()
    metrics.watch_call_records(sink=sink, pump=pump)
    exposed = generate_latest(metrics.registry).decode()
    assert "trunkplane_call_records_written_total 40.0" in exposed
    assert "trunkplane_call_records_pumped_total 40.0" in exposed
    on_topic = read_topic(kafka.bootstrap, kafka.calls_topic)
    assert {r.key for r in on_topic} == {b"tenant-0", b"tenant-1", b"tenant-2"}


def test_a_pump_whose_store_fails_writes_the_batch_again_before_anything_newer(
        kafka: KafkaSettings, tmp_path: Path) -> None:
    codec = AvroCodec(WireCipher(kafka.wire_key))
    publisher = KafkaCallSink(kafka, codec)
    publisher.publish([call(n) for n in range(5)])
    store = CallStore(SqliteDatabase(tmp_path / "views.sqlite"))
    failures = [OSError("store away")] * 2

    def flaky(records: object) -> None:
        if failures:
            raise failures.pop()
        store.record(records)  # type: ignore[arg-type]

    pump = CallPump(KafkaCallFeed(kafka, "flaky-calls", codec, **GROUP_TIMEOUTS), flaky)
    pump.start()
    try:
        wait_until(lambda: pump.stored >= 5)
        publisher.publish([call(5)])
        wait_until(lambda: pump.stored >= 6)
    finally:
        pump.stop()
        publisher.close()
    page, _ = store.page(CallQuery(tenant="acme"))
    assert [r.call_id for r in page] == [f"call-{n}" for n in reversed(range(6))]


def test_a_pump_dropped_from_its_group_while_storing_reads_again_and_goes_on(
        kafka: KafkaSettings, tmp_path: Path) -> None:
    """The store held a batch past the poll interval (a database failover): the member left
    the group, and every commit fails until it rejoins, which it does only in a read. The
    pump used to store the same batch every second for ever and never read again."""
    codec = AvroCodec(WireCipher(kafka.wire_key))
    publisher = KafkaCallSink(kafka, codec)
    publisher.publish([call(n) for n in range(5)])
    store = CallStore(SqliteDatabase(tmp_path / "views.sqlite"))
    stalls = [4.0]

    def slow(records: object) -> None:
        if stalls:
            time.sleep(stalls.pop())  # past max_poll_interval: the member leaves the group
        store.record(records)  # type: ignore[arg-type]

    feed = KafkaCallFeed(kafka, "stalled-calls", codec, session_timeout_ms=2000,
                         heartbeat_interval_ms=500, max_poll_interval_ms=2000)
    pump = CallPump(feed, slow)
    pump.start()
    try:
        wait_until(lambda: pump.stored >= 5)
        publisher.publish([call(5)])
        wait_until(lambda: len(store.page(CallQuery(tenant="acme"))[0]) == 6)
    finally:
        pump.stop()
        publisher.close()
    page, _ = store.page(CallQuery(tenant="acme"))
    assert [r.call_id for r in page] == [f"call-{n}" for n in reversed(range(6))]


def test_the_pbx_password_is_sealed_on_the_broker_and_the_agent_finds_the_tenant(
        kafka: KafkaSettings) -> None:
    app = TrunkplaneApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.execute(partial(commands.update_pbx, tenant="acme", etag="", meta=META, patch={
        "source_cidrs": ["10.20.0.0/16"], "username": "pbx-1", "password": SECRET,
        "targets": [{"uri": "sip:pbx.acme.example", "priority": 5, "weight": 2}]})).unwrap()
    app.execute(partial(commands.update_pbx, tenant="acme", etag="", meta=META,
                        patch={"password": SECRET + "-2"})).unwrap()
    codec = AvroCodec(WireCipher(kafka.wire_key))
    relay = Relay(app, codec, kafka, MemoryPositions())
    while relay.publish_once():
        pass
    records = read_topic(kafka.bootstrap, kafka.events_topic)
    assert len(records) == 2
    assert all(SECRET.encode() not in r.value for r in records)
    decoded = [codec.decode(r.value) for r in records]
    state = AgentState()
    state.apply([FeedItem(d.position, d.tenant, d.value) for d in decoded])
    access = state.pbx_for_source("10.20.3.4")
    assert access is not None and access.tenant == "acme"
    assert (access.username, access.password) == ("pbx-1", SECRET + "-2")
    assert [(t.uri, t.priority, t.weight) for t in access.targets] == [
        ("sip:pbx.acme.example", 5, 2)]
    app.close()
