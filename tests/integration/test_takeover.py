"""Taking partitions over from the state topic, against a real Kafka-protocol broker and a
real Kamailio: the new owner reads the snapshots and only the events after their
position (not the history), its trunks register again, and a change made around a
snapshot, or a crash between an event and its snapshot, is neither lost nor applied
twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaError

from domain import commands
from domain.application import TrunkplaneApp
from domain.feeds import MemoryPositions
from domain.model import CommandMeta
from infra.config.settings import KafkaSettings
from infra.messaging.codec import AvroCodec
from infra.messaging.feeds import KafkaEventFeed
from infra.messaging.relay import Relay
from infra.messaging.state import POSITION_KEY, StateWriter, restore
from infra.messaging.topics import producer
from infra.security.sealing import WireCipher
from sipagent.engine import SipAgent
from sipagent.runner import AgentRunner
from sipagent.state import AgentState
from tests.integration.test_sip_agent import fast, registered
from tests.kamailio import Kamailio
from tests.status_recorder import Recorder

PASSWORD = "Takeover-Password-4411"
META = CommandMeta(actor="alice@example.com", reason="take-over test")
GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
USERS = [f"10{n:02d}" for n in range(8)]


@dataclass
class Agent:
    """An agent's feed loop as `trunkplane agent` wires it, driven step by step."""

    state: AgentState
    feed: KafkaEventFeed
    writer: StateWriter
    runner: AgentRunner
    trunk_calls: Counter[str] = field(default_factory=Counter)

    def until(self, test: Callable[[], bool], timeout: float = 60.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while not test():
            assert time.monotonic() < deadline, (self.state.applied, self.feed.consumed)
            self.runner.step(timeout=0.2)

    def stop(self) -> None:
        self.feed.close()
        self.writer.close()


def agent(kafka: KafkaSettings, codec: AvroCodec, sip: SipAgent | None = None,
          make_producer: Callable[[], Any] | None = None) -> Agent:
    calls: Counter[str] = Counter()

    def on_trunk(tenant: str, trunk_id: str, settings: dict[str, Any] | None) -> None:
        calls[trunk_id] += 1
        if sip is not None:
            sip.update(tenant, trunk_id, settings)

    state = AgentState(on_trunk, track=True)
    fences: dict[int, int] = {}
    feed = KafkaEventFeed(kafka, "takeover-agents", codec, from_start=True,
                          start_at=partial(restore, kafka, codec, state, fences=fences),
                          on_revoked=state.revoked,
                          on_assigned=lambda partitions, new: state.assigned(partitions),
                          **GROUP_TIMEOUTS)
    writer = StateWriter(kafka, codec, state, every=0, make_producer=make_producer,
                         generation=lambda: feed.generation, fences=fences)
    return Agent(state, feed, writer, AgentRunner(feed, state), calls)


@pytest.fixture
def app() -> Iterator[TrunkplaneApp]:
    application = TrunkplaneApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield application
    application.close()


@pytest.fixture
def registrar(tmp_path: Path) -> Iterator[Kamailio]:
    with Kamailio(tmp_path / "kamailio", dict.fromkeys(USERS, PASSWORD),
                  max_expires=3600) as running:
        yield running


def change(app: TrunkplaneApp, tenant: str, trunk: str, patch: dict[str, Any]) -> None:
    app.execute(lambda uow: commands.update_trunk(uow, tenant, trunk, patch, "", META)
                ).unwrap()


def history(app: TrunkplaneApp, port: int, changes: int) -> None:
    """Eight trunks of four tenants, each changed `changes` times."""
    for n, user in enumerate(USERS):
        raw = {"name": f"trunk-{n}", "type": "register", "host": f"127.0.0.1:{port}",
               "username": user, "password": PASSWORD, "codecs": ["PCMU"]}
        app.execute(partial(commands.create_trunk, tenant=f"tenant-{n % 4}", raw=raw,
                            template="", meta=META)).unwrap()
    for number in range(changes):
        for n in range(len(USERS)):
            change(app, f"tenant-{n % 4}", f"trunk-{n}", {"description": f"change {number}"})


class Publisher:
    """The control plane's relay, publishing what the store holds on demand."""

    def __init__(self, app: TrunkplaneApp, kafka: KafkaSettings, codec: AvroCodec) -> None:
        self.app = app
        self.relay = Relay(app, codec, kafka, MemoryPositions())

    def __call__(self) -> int:
        """Publishes the log up to its head; returns how many events went out."""
        sent = 0
        while self.relay.position < self.app.head():
            sent += self.relay.publish_once()
        return sent

    def stop(self) -> None:
        self.relay.stop()


@pytest.fixture
def publish(app: TrunkplaneApp, kafka: KafkaSettings) -> Iterator[Publisher]:
    publisher = Publisher(app, kafka, AvroCodec(WireCipher(kafka.wire_key)))
    yield publisher
    publisher.stop()


def test_a_new_owner_reads_the_snapshots_not_the_history_and_registers_again(
        kafka: KafkaSettings, app: TrunkplaneApp, publish: Publisher,
        registrar: Kamailio) -> None:
    codec = AvroCodec(WireCipher(kafka.wire_key))
    history(app, registrar.udp, changes=60)
    published = publish()
    assert published == 8 * 61

    first = agent(kafka, codec)
    first.until(lambda: first.state.applied == published)
    assert first.feed.consumed == published  # nothing recorded yet: from the start
    assert first.writer.write() and first.writer.written == 8
    expected = {t: first.state.tenant(t) for t in first.state.tenants()}
    first.stop()  # leaves the group: its partitions go to the next member

    sip = SipAgent(fast(agent_id="new-owner", register_expires=3600), recorder := Recorder())
    sip.start()
    second = agent(kafka, codec, sip)
    try:
        second.until(lambda: second.state.trunk_count() == 8)
        assert second.state.restored == 8  # one snapshot per trunk...
        assert second.feed.consumed == 0  # ...and not one of the 488 events
        assert {t: second.state.tenant(t) for t in second.state.tenants()} == expected
        assert second.state.applied == 0
        trunk_ids = [t for s in expected.values() if s is not None for t in s.trunks]
        for trunk_id in trunk_ids:
            recorder.wait(trunk_id, registered, timeout=30)
        assert all(len(registrar.contacts(user)) == 1 for user in USERS)

        change(app, "tenant-1", "trunk-1", {"description": "after the take-over"})
        assert publish() == 1
        second.until(lambda: second.state.applied == 1)
        tenant = second.state.tenant("tenant-1")
        assert tenant is not None and "after the take-over" in [
            s["description"] for s in tenant.trunks.values()]
    finally:
        second.stop()
        sip.stop()


class PositionsLost:
    """A producer that dies before a position goes out: the snapshots were acked, the
    position that would follow them never arrives (a crash between the two)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def send(self, topic: str, key: bytes, value: bytes, partition: int,
             headers: Any = None) -> Any:
        if key == POSITION_KEY:
            raise KafkaError("the agent died before writing the position")
        return self.real.send(topic, key=key, value=value, partition=partition,
                              headers=headers)

    def flush(self, timeout: float) -> None:
        self.real.flush(timeout=timeout)

    def close(self, timeout: float) -> None:
        self.real.close(timeout=timeout)


def test_a_change_around_the_snapshot_and_a_crash_before_it_are_harmless(
        kafka: KafkaSettings, app: TrunkplaneApp, publish: Publisher) -> None:
    codec = AvroCodec(WireCipher(kafka.wire_key))
    history(app, 5060, changes=5)
    published = publish()
    first = agent(kafka, codec)
    first.until(lambda: first.state.applied == published)
    assert first.writer.write()  # snapshots and positions of everything so far

    # two changes of one trunk: their snapshot is written, its position is not
    first.writer.producer.make = lambda: PositionsLost(producer(kafka, "test-state"))
    first.writer.producer.drop()
    change(app, "tenant-2", "trunk-2", {"description": "around the snapshot"})
    change(app, "tenant-2", "trunk-2", {"codecs": ["PCMA"]})
    published += publish()
    first.until(lambda: first.state.applied == published)
    assert not first.writer.write()
    # one more change, applied and never written: the agent dies right after it
    change(app, "tenant-2", "trunk-2", {"description": "never snapshotted"})
    published += publish()
    first.until(lambda: first.state.applied == published)
    expected = {t: first.state.tenant(t) for t in first.state.tenants()}
    first.stop()

    second = agent(kafka, codec)
    try:
        second.until(lambda: second.state.applied + second.state.skipped == 3)
        assert second.feed.consumed == 3  # the three changes after the recorded position
        assert second.state.skipped == 2  # the two its snapshot already holds: once
        assert second.state.applied == 1  # the one it lacked
        assert {t: second.state.tenant(t) for t in second.state.tenants()} == expected
        tenant = second.state.tenant("tenant-2")
        assert tenant is not None
        trunk = next(s for s in tenant.trunks.values() if s["name"] == "trunk-2")
        assert trunk["description"] == "never snapshotted" and trunk["codecs"] == ["PCMA"]
        trunk_id = next(t for t, s in tenant.trunks.items() if s["name"] == "trunk-2")
        assert second.trunk_calls[trunk_id] == 2  # restored, then the change it lacked
    finally:
        second.stop()


def state_records(kafka: KafkaSettings) -> list[Any]:
    """Every record on the state topic, as written (tansu never compacts)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(kafka.state_topic, p) for p in range(kafka.partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        while batch := consumer.poll(timeout_ms=1000):
            records += [r for rs in batch.values() for r in rs]
        return records
    finally:
        consumer.close()


def test_a_deleted_trunk_is_a_tombstone_and_no_new_owner_brings_it_back(
        kafka: KafkaSettings, app: TrunkplaneApp, publish: Publisher) -> None:
    codec = AvroCodec(WireCipher(kafka.wire_key))
    history(app, 5060, changes=2)
    published = publish()
    first = agent(kafka, codec)
    first.until(lambda: first.state.applied == published)
    assert first.writer.write()
    tenant = first.state.tenant("tenant-3")
    assert tenant is not None
    gone = next(t for t, s in tenant.trunks.items() if s["name"] == "trunk-3")

    app.execute(lambda uow: commands.delete_trunk(uow, "tenant-3", "trunk-3", "", META)
                ).unwrap()
    published += publish()
    first.until(lambda: first.state.applied == published)
    # the tombstone is written, its position is not: the next owner reads the deletion
    # again, and must tell it apart from a new event by the tombstone's version
    first.writer.producer.make = lambda: PositionsLost(producer(kafka, "test-state"))
    first.writer.producer.drop()
    assert not first.writer.write()
    expected = {t: first.state.tenant(t) for t in first.state.tenants()}
    first.stop()

    records = [r for r in state_records(kafka) if r.key == gone.encode()]
    assert records[-1].value is None  # a tombstone: compaction drops the trunk
    assert all(r.value is not None for r in records[:-1])
    assert dict(records[-1].headers)["tenant"] == b"tenant-3"

    second = agent(kafka, codec)
    try:
        second.until(lambda: second.state.applied + second.state.skipped >= 1)
        assert second.feed.consumed == 1  # the deletion, after the recorded position
        assert (second.state.applied, second.state.skipped) == (0, 1)
        assert second.trunk_calls[gone] == 0  # never registered again
        assert second.state.trunk_count() == 7
        assert {t: second.state.tenant(t) for t in second.state.tenants()} == expected
    finally:
        second.stop()


ZOMBIE = """
import json, os, signal, sys
from infra.config.settings import KafkaSettings
from infra.messaging.codec import AvroCodec
from infra.security.sealing import WireCipher
from tests.integration.test_takeover import agent
kafka = KafkaSettings(**json.loads(sys.argv[1]))
zombie = agent(kafka, AvroCodec(WireCipher(kafka.wire_key)))
history = int(sys.argv[2])
zombie.until(lambda: zombie.state.applied == history)
assert zombie.writer.write()
print("written", flush=True)
sys.stdin.readline()  # one more change published
zombie.until(lambda: zombie.state.applied == history + 1)
os.kill(os.getpid(), signal.SIGSTOP)  # paused between its commit and its write
zombie.writer.write()  # resumed, its partitions long gone: it does not know yet
print("wrote", zombie.writer.written, flush=True)
sys.stdin.readline()
"""


@dataclass(frozen=True)
class Compacted(KafkaSettings):
    """The same topics, but a copy of the state topic as a compacting Kafka leaves it."""

    copy_prefix: str = ""

    @property
    def state_topic(self) -> str:
        return f"{self.copy_prefix}state"


def compact_copy(kafka: KafkaSettings) -> Compacted:
    """Kafka's compaction of the state topic (tansu never compacts): the newest record of
    each key, in offset order, written to a new topic."""
    from infra.messaging.topics import init_topics

    copy = Compacted(**{f: getattr(kafka, f) for f in KafkaSettings.__dataclass_fields__},
                     copy_prefix=f"{kafka.topic_prefix}compacted.")
    init_topics(KafkaSettings(bootstrap=kafka.bootstrap, topic_prefix=copy.copy_prefix,
                              partitions=kafka.partitions, replication=1))
    records = state_records(kafka)
    last = {(r.partition, r.key): r.offset for r in records}
    out = producer(kafka, "test-compaction")
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if last[(record.partition, record.key)] == record.offset:
            out.send(copy.state_topic, key=record.key, value=record.value,
                     partition=record.partition, headers=list(record.headers) or None)
            out.flush(timeout=10)  # one at a time: in order
    out.close(timeout=10)
    return copy


def test_a_deposed_owner_resumed_after_a_pause_cannot_overwrite_its_successor(
        kafka: KafkaSettings, app: TrunkplaneApp, publish: Publisher) -> None:
    """An owner paused (SIGSTOP) between applying a change and writing it loses its
    partitions; its successor moves on; resumed, the old owner writes its stale snapshot
    and position. Neither a reader of the whole topic nor one of the topic as compaction
    leaves it (the stale record the only one of its trunk) may take that state."""
    import json
    import signal
    import subprocess
    import sys

    from infra.messaging.state import read_state

    codec = AvroCodec(WireCipher(kafka.wire_key))
    history(app, 5060, changes=1)
    published = publish()
    settings = {f: getattr(kafka, f) for f in KafkaSettings.__dataclass_fields__}
    zombie = subprocess.Popen(
        [sys.executable, "-c", ZOMBIE, json.dumps(settings), str(published)],
        cwd=Path(__file__).resolve().parents[2], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    assert zombie.stdin is not None and zombie.stdout is not None
    successor = None
    try:
        assert zombie.stdout.readline().strip() == "written"
        change(app, "tenant-2", "trunk-2", {"description": "the zombie's"})
        published += publish()
        zombie.stdin.write("go\n")
        zombie.stdin.flush()
        import time

        deadline = time.monotonic() + 60
        while (zombie.poll() is None and time.monotonic() < deadline
               and Path(f"/proc/{zombie.pid}/stat").read_text().split()[2] != "T"):
            time.sleep(0.05)
        assert Path(f"/proc/{zombie.pid}/stat").read_text().split()[2] == "T"  # stopped

        change(app, "tenant-2", "trunk-2", {"description": "the successor's"})
        published += publish()
        successor = agent(kafka, codec)  # joins; the paused owner is expelled
        successor.until(lambda: successor is not None and successor.state.applied == 2,
                        timeout=90)
        assert successor.writer.write()

        zombie.send_signal(signal.SIGCONT)
        assert zombie.stdout.readline().split() == ["wrote", str(8 + 1)]
        # the successor moves on in the same partition: its position now follows the
        # zombie's records (compaction keeps only the zombie's of trunk-2)
        change(app, "tenant-2", "trunk-6", {"description": "later"})
        published += publish()
        successor.until(lambda: successor is not None and successor.state.applied == 3)
        assert successor.writer.write()
        expected = successor.state.tenant("tenant-2")
        assert expected is not None
        trunk_2 = next(t for t, s in expected.trunks.items() if s["name"] == "trunk-2")
        assert expected.trunks[trunk_2]["description"] == "the successor's"
    finally:
        if successor is not None:
            successor.stop()
        zombie.send_signal(signal.SIGCONT)
        zombie.kill()
        zombie.wait(timeout=10)

    def described(copy: KafkaSettings) -> tuple[str | None, bool]:
        states, positions = read_state(copy, codec, range(kafka.partitions))
        partition = expected.partition
        mine = [s for s in states[partition] if str(s.aggregate_id) == trunk_2]
        description = mine[0].settings["description"] if mine and mine[0].settings else None
        return description, partition in positions

    records = [r for r in state_records(kafka) if r.key == trunk_2.encode()]
    assert [r.value is not None for r in records] == [True, True, True]
    assert codec.decode(records[-1].value).value.settings["description"] == "the zombie's"
    # the whole topic: the successor's snapshot and position win
    assert described(kafka) == ("the successor's", True)
    # compacted: the zombie's is the only snapshot of trunk-2; it is left out, and the
    # partition is read from the start rather than from the successor's position
    copy = compact_copy(kafka)
    assert described(copy) == (None, False)
    third = agent(copy, codec)
    try:
        def caught_up() -> bool:
            tenant = third.state.tenant("tenant-2")
            return tenant is not None and tenant.trunks == expected.trunks

        third.until(caught_up)
        assert third.state.trunk_count() == 8 and third.state.held == 0
    finally:
        third.stop()


def test_the_feed_tells_how_far_behind_it_reads(
        kafka: KafkaSettings, app: TrunkplaneApp, publish: Publisher) -> None:
    """The state writer writes rarely while its agent catches up: a short poll must not
    pass for caught up (a poll often brings less than a batch on a loaded machine)."""
    codec = AvroCodec(WireCipher(kafka.wire_key))
    history(app, 5060, changes=100)
    published = publish()
    reader = agent(kafka, codec)
    try:
        read = 0
        while not read:
            items = reader.feed.read(limit=50, timeout=1.0)
            reader.state.apply(items)
            read = len(items)
        assert 0 < read <= 50
        assert reader.feed.lag > 0  # of the partitions fetched from so far
        reader.until(lambda: reader.state.applied == published)
        assert reader.feed.lag == 0
    finally:
        reader.stop()
