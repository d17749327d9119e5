"""The distributed mode's broker side: topic set-up, the relay (notification log -> events
topic), and the Kafka implementations of `EventFeed` and `StatusSink`/status feed.

Works with any Kafka-protocol broker through kafka-python; nothing here knows which."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError

from domain.application import TrunkplaneApp
from domain.feeds import FeedItem, PositionStore, StoreEventFeed
from domain.status import AgentHeartbeat, StatusObservation
from infra.avro import AvroError, Codec
from infra.leader import RELAY_LOCK, Leader
from infra.settings import KafkaSettings
from projections.db import Database

log = logging.getLogger(__name__)
RELAY = "relay"


# --- topics ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TopicResult:
    name: str
    created: bool
    detail: str


def init_topics(kafka: KafkaSettings, timeout: float = 30.0) -> list[TopicResult]:
    """Creates the events and status topics and their dead-letter topics; topics that
    exist are left as they are. Idempotent."""
    events = {"retention.ms": str(kafka.events_retention_ms), "cleanup.policy": "delete"}
    status = {"cleanup.policy": "compact", "retention.ms": str(kafka.status_retention_ms)}
    letters = {"retention.ms": str(30 * 24 * 3600 * 1000), "cleanup.policy": "delete"}
    wanted = [
        (kafka.events_topic, kafka.partitions, events),
        (kafka.status_topic, kafka.partitions, status),
        (kafka.dead_letters(kafka.events_topic), 1, letters),
        (kafka.dead_letters(kafka.status_topic), 1, letters),
    ]
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap, client_id="trunkplane-init",
                             request_timeout_ms=int(timeout * 1000))
    results = []
    try:
        for name, partitions, config in wanted:
            topic = NewTopic(name, partitions, kafka.replication, topic_configs=config)
            try:
                admin.create_topics([topic], timeout_ms=int(timeout * 1000))
            except TopicAlreadyExistsError:
                results.append(TopicResult(name, False, "exists, left as it is"))
                continue
            settings = ", ".join(f"{k}={v}" for k, v in config.items())
            results.append(TopicResult(
                name, True, f"{partitions} partitions, replication {kafka.replication}, "
                f"{settings}"))
    finally:
        admin.close()
    return results


def producer(kafka: KafkaSettings, client_id: str) -> KafkaProducer:
    """acks=all and idempotence: a retried send is never written twice, and a record is
    acknowledged only when every in-sync replica has it."""
    return KafkaProducer(
        bootstrap_servers=kafka.bootstrap, client_id=client_id, acks="all",
        enable_idempotence=True, linger_ms=5, batch_size=256 * 1024,
        max_in_flight_requests_per_connection=5, request_timeout_ms=15000,
        retry_backoff_ms=200, reconnect_backoff_max_ms=2000)


# --- relay -------------------------------------------------------------------------------

class DatabasePositions:
    """Positions kept in the views database (the same PostgreSQL as the store in the
    distributed mode)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        with db.transaction() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS tp_feed_positions "
                           "(name TEXT PRIMARY KEY, position BIGINT NOT NULL)")

    def load(self, name: str) -> int:
        with self._db.transaction() as cursor:
            cursor.execute("SELECT position FROM tp_feed_positions WHERE name = ?", (name,))
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    def save(self, name: str, position: int) -> None:
        with self._db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO tp_feed_positions (name, position) VALUES (?, ?) ON CONFLICT "
                "(name) DO UPDATE SET position = excluded.position", (name, position))


class Relay:
    """Publishes the notification log to the events topic, in order, and records the new
    position only after the broker acknowledged every record of the batch. A crash at
    any point republishes from the last recorded position: at least once, never lost."""

    def __init__(self, app: TrunkplaneApp, codec: Codec, kafka: KafkaSettings,
                 positions: PositionStore, make_producer: Callable[[], Any] | None = None,
                 batch: int = 2000, leader: Leader | None = None,
                 on_published: Callable[[int, int], None] | None = None) -> None:
        self.app = app
        self.codec = codec
        self.kafka = kafka
        self.batch = batch
        self.flush_timeout = 10.0  # then the broker counts as away: retry on back-off
        self.leader = leader or Leader("", RELAY_LOCK)
        self._make_producer = make_producer or (lambda: producer(kafka, "trunkplane-relay"))
        self._producer: Any = None
        self._feed = StoreEventFeed(app, RELAY, positions)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_published = on_published
        self.published = 0
        self.leading = False
        self.last_error = ""

    def notify(self) -> None:
        self._wake.set()

    @property
    def position(self) -> int:
        """The last log position the broker acknowledged (saved in the position store)."""
        return self._feed.position

    def publish_once(self) -> int:
        """Publishes the next batch; returns how many records went out (0: up to date)."""
        items = self._feed.read(self.batch, timeout=0)
        if not self._feed.uncommitted:
            return 0
        try:
            if self._producer is None:
                self._producer = self._make_producer()
            sends = [self._producer.send(
                self.kafka.events_topic, key=item.tenant.encode(),
                value=self.codec.encode_event(item.event, item.position, item.tenant))
                for item in items]
            self._producer.flush(timeout=self.flush_timeout)
            for future in sends:
                future.get(timeout=0)  # raises the broker's error for any record not acked
        except BaseException:
            self._feed.rewind()  # the batch goes out again: at least once, never skipped
            raise
        self._feed.commit()
        self.published += len(sends)
        if self._on_published is not None:
            self._on_published(self.position, len(sends))
        return len(sends)

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._producer is not None:
            with suppress(Exception):
                self._producer.close(timeout=5)
        self.leader.release()

    def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if not self.leading:
                self.leading = self.leader.acquire()
                if not self.leading:
                    self._stopping.wait(2.0)
                    continue
                self._feed.rewind(reload=True)  # from the last leader's progress
                log.info("relay: publishing to %s from position %d",
                         self.kafka.events_topic, self.position)
            try:
                sent = self.publish_once()
                failures = 0
                self.last_error = ""
            except Exception as error:  # broker away, or a bug: never die, keep saying so
                failures += 1
                self.last_error = f"{type(error).__name__}: {error}"
                pause = min(30.0, 0.5 * 2 ** min(failures, 6))
                if isinstance(error, KafkaError | OSError):
                    log.warning("relay: broker unavailable (%s); position stays %d, retrying "
                                "in %.1f s", self.last_error, self.position, pause)
                else:
                    log.exception("relay: publishing from position %d failed; retrying in "
                                  "%.1f s", self.position, pause)
                self._drop_producer()
                self._stopping.wait(pause)
                continue
            if not self.leader.holds():
                log.warning("relay: lost the relay lock; standing by")
                self.leading = False
                continue
            if sent == 0:
                self._wake.wait(0.2)
                self._wake.clear()

    def _drop_producer(self) -> None:
        if self._producer is not None:
            with suppress(Exception):
                self._producer.close(timeout=0)
        self._producer = None


# --- consuming ---------------------------------------------------------------------------

class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, feed: _KafkaFeed) -> None:
        self.feed = feed

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.feed._revoked(list(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.feed._assigned(list(assigned))


class _KafkaFeed:
    """A consumer group member that decodes, routes undecodable records to the dead-letter
    topic (never stopping on them), and commits only when told."""

    def __init__(self, kafka: KafkaSettings, topic: str, group: str, codec: Codec,
                 from_start: bool = False, client_id: str = "trunkplane",
                 on_assigned: Callable[[list[int]], None] | None = None,
                 on_revoked: Callable[[list[int]], None] | None = None,
                 session_timeout_ms: int = 10000, heartbeat_interval_ms: int = 3000,
                 fetch_max_wait_ms: int = 50) -> None:
        self.kafka = kafka
        self.topic = topic
        self.codec = codec
        self.from_start = from_start
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.dead_letters = 0
        self._consumer = KafkaConsumer(
            bootstrap_servers=kafka.bootstrap, group_id=group, client_id=client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms, max_poll_records=2000,
            fetch_max_wait_ms=fetch_max_wait_ms)
        self._consumer.subscribe([topic], listener=_Listener(self))
        self._letters: Any = None

    @property
    def partitions(self) -> list[int]:
        return sorted(tp.partition for tp in self._consumer.assignment())

    def _assigned(self, assigned: list[TopicPartition]) -> None:
        if self.from_start and assigned:
            self._consumer.seek_to_beginning(*assigned)
        log.info("%s: now reading partitions %s", self.topic,
                 sorted(tp.partition for tp in assigned))
        if self.on_assigned is not None:
            self.on_assigned(sorted(tp.partition for tp in assigned))

    def _revoked(self, revoked: list[TopicPartition]) -> None:
        if self.on_revoked is not None and revoked:
            self.on_revoked(sorted(tp.partition for tp in revoked))

    def _poll(self, limit: int, timeout: float) -> Iterable[tuple[Any, Any]]:
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=limit)
        for tp in sorted(batches, key=lambda t: t.partition):
            for record in batches[tp]:
                try:
                    yield record, self.codec.decode(record.value)
                except AvroError as error:
                    self._dead_letter(record, str(error))

    def _dead_letter(self, record: Any, error: str) -> None:
        where = f"{record.topic} partition {record.partition} offset {record.offset}"
        log.error("undecodable record at %s: %s; moved to %s", where, error,
                  self.kafka.dead_letters(record.topic))
        if self._letters is None:
            self._letters = producer(self.kafka, "trunkplane-dead-letters")
        headers = [("error", error.encode()), ("topic", record.topic.encode()),
                   ("partition", str(record.partition).encode()),
                   ("offset", str(record.offset).encode())]
        self._letters.send(self.kafka.dead_letters(record.topic), key=record.key,
                           value=record.value, headers=headers)
        self._letters.flush(timeout=30)
        self.dead_letters += 1

    def commit(self) -> None:
        self._consumer.commit()

    def close(self) -> None:
        with suppress(Exception):
            self._consumer.close(autocommit=False)
        if self._letters is not None:
            with suppress(Exception):
                self._letters.close(timeout=5)


class KafkaEventFeed(_KafkaFeed):
    """`EventFeed` over the events topic. `from_start`: read each newly assigned partition
    from its beginning (an agent rebuilding the state of the tenants it takes over)."""

    def __init__(self, kafka: KafkaSettings, group: str, codec: Codec, **options: Any) -> None:
        super().__init__(kafka, kafka.events_topic, group, codec, **options)

    def read(self, limit: int = 500, timeout: float = 1.0) -> list[FeedItem]:
        return [FeedItem(decoded.position, decoded.tenant, decoded.value, record.partition)
                for record, decoded in self._poll(limit, timeout)
                if not isinstance(decoded.value, StatusObservation)]


class KafkaStatusFeed(_KafkaFeed):
    def __init__(self, kafka: KafkaSettings, group: str, codec: Codec, **options: Any) -> None:
        super().__init__(kafka, kafka.status_topic, group, codec, **options)

    def read(self, limit: int = 500, timeout: float = 1.0
             ) -> list[StatusObservation | AgentHeartbeat]:
        return [decoded.value for _, decoded in self._poll(limit, timeout)
                if isinstance(decoded.value, StatusObservation | AgentHeartbeat)]


class KafkaStatusSink:
    """`StatusSink` onto the status topic, keyed by trunk id (compacted: the newest
    observation of each trunk survives)."""

    def __init__(self, kafka: KafkaSettings, codec: Codec) -> None:
        self._topic = kafka.status_topic
        self._codec = codec
        self._producer = producer(kafka, "trunkplane-status")

    def publish(self, observations: Sequence[StatusObservation]) -> None:
        for o in observations:
            self._producer.send(self._topic, key=o.trunk_id.encode(),
                                value=self._codec.encode_status(o))
        self._producer.flush(timeout=30)

    def announce(self, heartbeat: AgentHeartbeat) -> None:
        self._producer.send(self._topic, key=f"agent:{heartbeat.agent_id}".encode(),
                            value=self._codec.encode_heartbeat(heartbeat))
        self._producer.flush(timeout=30)

    def close(self) -> None:
        with suppress(Exception):
            self._producer.close(timeout=5)


class StatusPump:
    """The control plane's end of the status topic: observations into the status view,
    committed after they are stored."""

    def __init__(self, feed: KafkaStatusFeed, sink: Callable[[Sequence[StatusObservation]], None],
                 announce: Callable[[AgentHeartbeat], None] = lambda heartbeat: None) -> None:
        self.feed = feed
        self.sink = sink
        self.announce = announce
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="status-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.feed.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                records = self.feed.read(timeout=0.5)
                if records:
                    observations = [r for r in records if isinstance(r, StatusObservation)]
                    if observations:
                        self.sink(observations)
                    for record in records:
                        if isinstance(record, AgentHeartbeat):
                            self.announce(record)
                    self.feed.commit()
            except KafkaError as error:
                log.warning("status feed: %s; retrying", error)
                time.sleep(1.0)


def scan_topic(consumer: Any, topic: str, timeout: float = 10.0, quiet_polls: int = 2,
               poll_ms: int = 300) -> list[Any]:
    """Every record of a topic from its start, read by `consumer` with no group, until
    `quiet_polls` polls in a row bring nothing (tansu's end_offsets cannot be trusted) or
    `timeout` passes; in partition and offset order."""
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                       or ())]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < quiet_polls and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=poll_ms)
        quiet = 0 if batch else quiet + 1
        for part_records in batch.values():
            records += part_records
    return sorted(records, key=lambda r: (r.partition, r.offset))


def seed_from_status(kafka: KafkaSettings, codec: Codec, partitions: list[int],
                     seed: Callable[[str, str, int, int], None], ttl: float,
                     timeout: float = 10.0) -> int:
    """An agent that takes over partitions learns the calls in progress on their tenants'
    trunks from the newest observation of each trunk on the status topic (whoever made
    it), so it never admits more than the limits while those calls last. Returns how many
    trunks it seeded."""
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False,
                             client_id="trunkplane-seed")
    try:
        events = consumer.partitions_for_topic(kafka.events_topic) or set()
        newest: dict[str, StatusObservation] = {}
        for record in scan_topic(consumer, kafka.status_topic, timeout=timeout):
            try:
                value = codec.decode(record.value).value
            except AvroError:
                continue  # the control plane's pump sends it to the dead letters
            if isinstance(value, StatusObservation) and (
                    value.trunk_id not in newest or
                    value.observed_at > newest[value.trunk_id].observed_at):
                newest[value.trunk_id] = value
    finally:
        consumer.close()
    owned = set(partitions)
    every = sorted(events)
    seeded = 0
    now = datetime.now(UTC)
    for o in newest.values():
        if not (o.active_inbound or o.active_outbound) or not every:
            continue
        if (now - o.observed_at).total_seconds() > ttl:
            continue  # its leases have expired since
        if partition_of(o.tenant.encode(), every) in owned:
            seed(o.tenant, o.trunk_id, o.active_inbound, o.active_outbound)
            seeded += 1
    return seeded


def partition_of(key: bytes, partitions: list[int]) -> int:
    """The partition the producer's default partitioner (murmur2, as Java's) picks."""
    from kafka.partitioner.default import murmur2

    every = sorted(partitions)
    index: int = murmur2(key) & 0x7FFFFFFF
    return every[index % len(every)]
