"""The distributed mode's topics: set-up (`trunkplane kafka init`), the producer every
publisher uses, and reading a whole topic. Works with any Kafka-protocol broker through
kafka-python; nothing here knows which."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any, NamedTuple

from kafka import KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from infra.config.settings import KafkaSettings
from infra.messaging.codec import gc_paused

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicResult:
    name: str
    created: bool
    detail: str


def init_topics(kafka: KafkaSettings, timeout: float = 30.0) -> list[TopicResult]:
    """Creates the events, state, status, calls and heads topics and the dead-letter topics;
    topics that exist are left as they are. Idempotent."""
    events = {"retention.ms": str(kafka.events_retention_ms), "cleanup.policy": "delete"}
    # the newest snapshot of each aggregate (key: its id) and each partition's position
    # (key: "position"): compaction keeps them, whatever their age. Kafka compacts only
    # closed segments: an hour's segments keep what a new owner reads near one record per
    # aggregate (the default, a week or 1 GB, kept every snapshot written since)
    state = {"cleanup.policy": "compact", "retention.ms": "-1", "segment.ms": "3600000"}
    status = {"cleanup.policy": "compact", "retention.ms": str(kafka.status_retention_ms)}
    calls = {"retention.ms": str(kafka.calls_retention_ms), "cleanup.policy": "delete"}
    letters = {"retention.ms": str(30 * 24 * 3600 * 1000), "cleanup.policy": "delete"}
    wanted = [
        (kafka.events_topic, kafka.partitions, events),
        (kafka.state_topic, kafka.partitions, state),  # partition p: events partition p's
        (kafka.status_topic, kafka.partitions, status),
        (kafka.calls_topic, kafka.partitions, calls),
        # one partition, kept forever: every signed head in order, a witness of the log
        (kafka.heads_topic, 1, {"retention.ms": "-1", "cleanup.policy": "delete"}),
        (kafka.dead_letters(kafka.events_topic), 1, letters),
        (kafka.dead_letters(kafka.status_topic), 1, letters),
        (kafka.dead_letters(kafka.calls_topic), 1, letters),
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


def client(kafka: KafkaSettings) -> dict[str, Any]:
    """What every producer and consumer of ours is given: the brokers, and no topic made
    by asking for it (a broker that auto-creates would make ours with its own partition
    count; the topics come from `kafka init` only)."""
    return {"bootstrap_servers": kafka.bootstrap, "allow_auto_create_topics": False}


def producer(kafka: KafkaSettings, client_id: str) -> KafkaProducer:
    """acks=all and idempotence: a retried send is never written twice, and a record is
    acknowledged only when every in-sync replica has it. A send blocks at most
    `max_block_ms` and a record waits at most `delivery_timeout_ms`, then fails; the
    callers drop a producer whose sends failed (kafka-python 3 does not bound what one
    buffers) and build a new one on their back-off."""
    return KafkaProducer(
        **client(kafka), client_id=client_id, acks="all",
        enable_idempotence=True, linger_ms=5, batch_size=256 * 1024,
        max_in_flight_requests_per_connection=5, request_timeout_ms=15000,
        retry_backoff_ms=200, reconnect_backoff_max_ms=2000, max_block_ms=10000,
        delivery_timeout_ms=30000)


class Outgoing(NamedTuple):
    """One record for LazyProducer.deliver."""

    key: bytes | None
    value: bytes | None  # None: a tombstone
    partition: int | None = None  # None: the key's partition
    headers: list[tuple[str, bytes]] | None = None


class LazyProducer:
    """A publisher's producer: built on first use (`make`, by default `producer`), dropped
    when a delivery fails so that the next use builds a new one. kafka-python 3 does not
    bound what a producer buffers, and one whose InitProducerId failed stays jammed for
    good: a new producer is how a publisher gets over a broker failure. Not thread-safe
    (a publisher used from several threads holds its own lock); `close` is idempotent."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.built = 0  # producers made (more than one: rebuilt after failures)
        self._producer: Any = None

    def get(self) -> Any:
        if self._producer is None:
            self._producer = self.make()
            self.built += 1
        return self._producer

    def deliver(self, topic: str, records: Iterable[Outgoing], timeout: float,
                quiet_gc: bool = False) -> int:
        """Sends the records and returns how many once the broker acknowledged every one;
        raises its error for any it did not take (or on `timeout` seconds), dropping the
        producer. `quiet_gc`: `records` (a generator, say, that encodes them) is read and
        sent with the cyclic collector paused (codec.gc_paused), not the wait."""
        try:
            sent = self.get()
            quiet: AbstractContextManager[None] = gc_paused() if quiet_gc else nullcontext()
            with quiet:
                sends = [sent.send(topic, key=r.key, value=r.value, partition=r.partition,
                                   headers=r.headers) for r in records]
            sent.flush(timeout=timeout)
            for future in sends:
                future.get(timeout=0)  # the broker's error for any record not acked
        except BaseException:
            self.drop()
            raise
        return len(sends)

    def drop(self) -> None:
        """Gives the producer up at once (what it still holds is lost)."""
        self._close(0)

    def close(self) -> None:
        """Closes the producer, giving what it holds 5 s to go out."""
        self._close(5)

    def _close(self, timeout: float) -> None:
        if self._producer is not None:
            with suppress(Exception):
                self._producer.close(timeout=timeout)
        self._producer = None


class TopicError(Exception):
    """The broker lacks a topic `kafka init` makes, or has it made otherwise."""


def topic_problem(kafka: KafkaSettings, topic: str, partitions: set[int] | None) -> str:
    """What is wrong with a topic given the partitions the broker reports ("" if fine)."""
    if not partitions:
        return (f"the broker at {kafka.bootstrap} has no topic {topic}: run `trunkplane "
                "kafka init` (with the same TRUNKPLANE_KAFKA_* settings as here)")
    if len(partitions) != kafka.partitions:
        return (f"topic {topic} has {len(partitions)} partitions, TRUNKPLANE_KAFKA_PARTITIONS "
                f"says {kafka.partitions}: tenants would not land on the partitions agents "
                "expect; set the number the topic was made with")
    return ""


def check_topics(kafka: KafkaSettings, timeout: float = 15.0) -> list[str]:
    """Start-up check: the events, state and status topics exist with the partitions and
    retention of the settings, and the dead-letter topics exist. Returns the problems found
    (empty: all is well)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**client(kafka), client_id="trunkplane-check",
                             request_timeout_ms=int(timeout * 1000) + 1000)
    try:
        problems = [topic_problem(kafka, t, consumer.partitions_for_topic(t))
                    for t in (kafka.events_topic, kafka.state_topic, kafka.status_topic)]
        # an undecodable record is moved to these before its poll is committed: without
        # them every later record waits behind it (auto-creation is off)
        problems += [f"the broker at {kafka.bootstrap} has no topic {t}: run `trunkplane "
                     "kafka init` (with the same TRUNKPLANE_KAFKA_* settings as here)"
                     for t in (kafka.dead_letters(kafka.events_topic),
                               kafka.dead_letters(kafka.status_topic),
                               kafka.dead_letters(kafka.calls_topic))
                     if not consumer.partitions_for_topic(t)]
    finally:
        consumer.close()
    problems = [p for p in problems if p]
    return problems or _retention_problems(kafka, timeout)


def _retention_problems(kafka: KafkaSettings, timeout: float) -> list[str]:
    from kafka.admin import ConfigResource, ConfigResourceType

    wanted = {kafka.events_topic: str(kafka.events_retention_ms)}
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap, client_id="trunkplane-check",
                             request_timeout_ms=int(timeout * 1000))
    try:
        answers = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t)
                                          for t in wanted])
    except Exception as error:  # a broker that cannot describe configs: say so, go on
        log.warning("cannot read the topics' retention from the broker: %s", error)
        return []
    finally:
        admin.close()
    problems = []
    for answer in answers:
        for resource in getattr(answer, "resources", []):
            topic, entries = resource[3], resource[4]
            found = {str(e[0]): str(e[1]) for e in entries}
            retention = found.get("retention.ms")
            if topic in wanted and retention is not None and retention != wanted[topic]:
                problems.append(
                    f"topic {topic} keeps records for retention.ms={retention}, the settings "
                    f"say {wanted[topic]}: it is the source of every state (an agent "
                    "whose partitions have no snapshot yet reads them from the start), so "
                    "it must keep every event")
    return problems


def topic_is_empty(kafka: KafkaSettings, topic: str, timeout: float = 3.0) -> bool:
    """No record in any partition (read from the start; tansu's end offsets cannot be
    trusted)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**client(kafka), enable_auto_commit=False,
                             client_id="trunkplane-check")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(
            consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if consumer.poll(timeout_ms=300, max_records=1):
                return False
        return True
    finally:
        consumer.close()


def scan_topic(consumer: Any, topic: str, timeout: float = 10.0, quiet_polls: int = 2,
               poll_ms: int = 300, since_ms: int | None = None) -> list[Any]:
    """Every record of a topic from its start, read by `consumer` with no group, until
    `quiet_polls` polls in a row bring nothing (tansu's end_offsets cannot be trusted) or
    `timeout` passes; in partition and offset order. `since_ms` (milliseconds since the
    epoch): only from where the broker's records reach that time (`seek_since`)."""
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                       or ())]
    consumer.assign(parts)
    if since_ms is None:
        consumer.seek_to_beginning(*parts)
    else:
        seek_since(consumer, parts, since_ms)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < quiet_polls and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=poll_ms)
        quiet = 0 if batch else quiet + 1
        for part_records in batch.values():
            records += part_records
    if quiet < quiet_polls:  # cut by the deadline, not at the end: say so
        log.warning("reading %s stopped at its %g s limit after %d records: the rest was "
                    "not read", topic, timeout, len(records))
    return sorted(records, key=lambda r: (r.partition, r.offset))


def seek_since(consumer: Any, parts: list[TopicPartition], since_ms: int) -> None:
    """Positions `consumer` on each partition at its first record the broker dates at or
    after `since_ms` (ListOffsets by timestamp; Kafka: the records' CreateTime, which the
    producer sets when it sends; tansu 0.6: when it stored the batch, the first batch
    stored after the time). A partition with nothing that recent (Kafka answers no
    offset; tansu offset 0 without a timestamp) is read from its end, as it was before
    the question, so nothing written meanwhile is missed. A broker that cannot answer
    (no support, a timeout) has every partition read from the start, as before: dearer,
    never less."""
    try:
        ends = consumer.end_offsets(parts)
        found = consumer.offsets_for_times(dict.fromkeys(parts, since_ms))
    except Exception as error:  # UnsupportedVersionError, KafkaTimeoutError, ...
        log.warning("%s: the broker gave no offsets by time (%s: %s); reading from the "
                    "start", parts[0].topic if parts else "?", type(error).__name__, error)
        consumer.seek_to_beginning(*parts)
        return
    for part in parts:
        answer = found.get(part)
        if answer is not None and answer.timestamp is not None and answer.timestamp >= 0:
            consumer.seek(part, answer.offset)
        elif part in ends:
            consumer.seek(part, ends[part])
        else:
            consumer.seek_to_beginning(part)


def partition_of(key: bytes, partitions: list[int]) -> int:
    """The partition the producer's default partitioner (murmur2, as Java's) picks."""
    from kafka.partitioner.default import murmur2

    every = sorted(partitions)
    index: int = murmur2(key) & 0x7FFFFFFF
    return every[index % len(every)]


def check_wire_key(kafka: KafkaSettings, codec: Any, sample: int = 500,
                   timeout: float = 5.0) -> str:
    """Start-up check: the wire key opens the passwords sealed in the events topic (its
    first `sample` records). "" when they open, or none is there yet."""
    from kafka import KafkaConsumer

    from infra.messaging.codec import AvroError

    consumer = KafkaConsumer(**client(kafka), enable_auto_commit=False,
                             client_id="trunkplane-check")
    try:
        parts = [TopicPartition(kafka.events_topic, p) for p in sorted(
            consumer.partitions_for_topic(kafka.events_topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        read, quiet, deadline = 0, 0, time.monotonic() + timeout
        while read < sample and quiet < 2 and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=300, max_records=sample)
            quiet = 0 if batch else quiet + 1
            for record in (r for records in batch.values() for r in records):
                read += 1
                try:
                    codec.decode(record.value)
                except AvroError as error:
                    if "sealed" in str(error) or "wire key" in str(error):
                        return (f"TRUNKPLANE_WIRE_KEY does not open the passwords on "
                                f"{record.topic} (partition {record.partition}, offset "
                                f"{record.offset}): {error}; set the ring the control "
                                "planes seal with")
        return ""
    finally:
        consumer.close()


def check_broker(kafka: KafkaSettings, codec: Any) -> None:
    """What `control` and `agent` check before they start: the topics as `kafka init`
    makes them, and a wire key that opens what is on them. Raises TopicError."""
    problems = check_topics(kafka)
    if not problems:
        problems = [p for p in [check_wire_key(kafka, codec)] if p]
    if problems:
        raise TopicError("; ".join(problems))
