"""The Kafka implementations of `EventFeed`, `StatusSink` and the status feed, the pumps
that copy a topic into the control plane (status view, call store), and the status-topic
scan that seeds inherited calls."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from domain.feeds import FeedItem
from domain.status import AgentHeartbeat, StatusObservation, TrunkState
from infra.config.settings import KafkaSettings
from infra.messaging.codec import AvroCodec, AvroError, gc_paused
from infra.messaging.topics import (
    LazyProducer,
    Outgoing,
    client,
    partition_of,
    producer,
    scan_topic,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, feed: _KafkaFeed) -> None:
        self.feed = feed

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.feed._revoked(list(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.feed._assigned(list(assigned))

    def on_partitions_lost(self, lost: Any) -> None:
        self.feed._lost(list(lost))


class _KafkaFeed:
    """A consumer group member that decodes, routes undecodable records to the dead-letter
    topic (never stopping on them), and commits only when told."""

    def __init__(self, kafka: KafkaSettings, topic: str, group: str, codec: AvroCodec,
                 from_start: bool = False, client_id: str = "trunkplane",
                 on_assigned: Callable[[list[int], list[int]], None] | None = None,
                 on_revoked: Callable[[list[int]], None] | None = None,
                 on_lost: Callable[[list[int]], object] | None = None,
                 session_timeout_ms: int = 10000, heartbeat_interval_ms: int = 3000,
                 max_poll_interval_ms: int = 300000, fetch_max_wait_ms: int = 50,
                 start_at: Callable[[list[int]], dict[int, int]] | None = None) -> None:
        self.kafka = kafka
        self.topic = topic
        self.codec = codec
        self.from_start = from_start
        # with from_start: where each new partition starts, once its tenants' state is
        # loaded (an agent's snapshots); partitions it gives no offset for, and all of
        # them if it fails, are read from the start
        self.start_at = start_at
        self.consumed = 0  # records read from the topic
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        # the group expelled this member (it did not poll in time): others may have owned
        # these partitions since, so what it held of them is stale (default: on_revoked)
        self.on_lost = on_lost
        self.dead_letters = 0
        self._consumer = KafkaConsumer(
            **client(kafka), group_id=group, client_id=client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms, max_poll_records=2000,
            max_poll_interval_ms=max_poll_interval_ms,
            fetch_max_wait_ms=fetch_max_wait_ms,
            # kafka-python holds every request a hung broker leaves unanswered until this
            # timeout: at the default 30 s a 60 s freeze grew an agent by 145 MB (measured);
            # at 5 s the growth stays at about 15 MB, however long the freeze
            request_timeout_ms=5000)
        self._consumer.subscribe([topic], listener=_Listener(self))
        self._letters = LazyProducer(lambda: producer(kafka, "trunkplane-dead-letters"))
        self._held: set[int] = set()  # partitions of the last assignment
        self._read_to: dict[int, int] = {}  # partition -> the offset after the last read
        self._news: list[tuple[str, list[int], list[int]]] = []  # for after the poll

    @property
    def partitions(self) -> list[int]:
        return sorted(tp.partition for tp in self._consumer.assignment())

    @property
    def generation(self) -> int:
        """The group generation this member last joined (-1: none): it changes only in
        a poll, on the thread that reads."""
        return int(self._consumer.group_metadata().generation_id)

    def _assigned(self, assigned: list[TopicPartition]) -> None:
        """A rebalance ended. Partitions held before it resume from the committed offset
        (their tenants are kept as they were); only new ones are read from the start."""
        new = [tp for tp in assigned if tp.partition not in self._held]
        if self.from_start and new and self.start_at is not None:
            self._consumer.pause(*new)  # until `_start`, after the poll, says where
        elif self.from_start and new:
            self._consumer.seek_to_beginning(*new)
        self._held = {tp.partition for tp in assigned}
        log.info("%s: now reading partitions %s (new: %s)", self.topic, sorted(self._held),
                 sorted(tp.partition for tp in new))
        self._news.append(("assigned", sorted(self._held),
                           sorted(tp.partition for tp in new)))

    def _revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            self._news.append(("revoked", sorted(tp.partition for tp in revoked), []))

    def _lost(self, lost: list[TopicPartition]) -> None:
        """The group went on without this member (a pause past the poll interval or the
        session): if assigned again, these partitions are new, read from their state and
        not resumed from whatever the successor committed onto stale tables."""
        gone = {tp.partition for tp in lost}
        self._held -= gone
        if gone:
            self._news.append(("lost", sorted(gone), []))

    def _tell(self) -> set[int]:
        """The rebalance's news, told after the poll: inside the rebalance callbacks slow
        work (seeding calls from the status topic) held the client's lock, its heartbeats
        stopped, and the group expelled the member. Returns the partitions started now
        (what this poll brought of them was fetched before their seek)."""
        news, self._news = self._news, []
        started: set[int] = set()
        for kind, partitions, new in news:
            if kind == "revoked" and self.on_revoked is not None:
                self.on_revoked(partitions)
            elif kind == "lost" and self.on_lost is not None:
                self.on_lost(partitions)
            elif kind == "lost" and self.on_revoked is not None:
                self.on_revoked(partitions)
            elif kind == "assigned":
                if new and self.from_start and self.start_at is not None:
                    started |= self._start([p for p in new if p in self._held])
                if self.on_assigned is not None:
                    self.on_assigned(partitions, new)  # every partition held, the new ones
        return started

    def _start(self, new: list[int]) -> set[int]:
        """New partitions, paused when assigned: their state loaded, they resume at the
        offsets it reflects (from the start where it records none, or it failed)."""
        offsets: dict[int, int] = {}
        if new:
            try:
                offsets = self.start_at(new) if self.start_at is not None else {}
            except Exception as error:
                log.warning("%s: partitions %s: no state to start from (%s: %s); reading "
                            "them from the start", self.topic, new, type(error).__name__,
                            error)
        parts = [TopicPartition(self.topic, p) for p in new]
        for part in parts:
            if part.partition in offsets:
                self._consumer.seek(part, offsets[part.partition])
            else:
                self._consumer.seek_to_beginning(part)
        self._consumer.resume(*parts)
        return set(new)

    def _poll(self, limit: int, timeout: float) -> Iterable[tuple[Any, Any]]:
        return self._decode(self._fetch(limit, timeout))

    def _fetch(self, limit: int, timeout: float) -> list[list[Any]]:
        """The records of the next poll, by partition, and the rebalance's news told."""
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=limit)
        started = self._tell()
        fetched = [batches[tp] for tp in sorted(batches, key=lambda t: t.partition)
                   if tp.partition not in started]  # those were fetched before the seek
        self.consumed += sum(len(records) for records in fetched)
        for records in fetched:
            if records:
                self._read_to[records[-1].partition] = records[-1].offset + 1
        return fetched

    @property
    def lag(self) -> int:
        """Records on the broker past what was read, by the high-water marks of the last
        fetches (no request: 0 for a partition not fetched from yet)."""
        behind = 0
        for part in self._consumer.assignment():
            end = self._consumer.highwater(part)
            read = self._read_to.get(part.partition)
            if end is not None and read is not None:
                behind += max(0, end - read)
        return behind

    def _decode(self, fetched: list[list[Any]]) -> list[tuple[Any, Any]]:
        """The poll's records decoded. If one cannot be moved to the dead-letter topic
        (the broker away), every fetched partition is set back to its first record, so
        the next read brings the whole poll again: the consumer had moved past it, and
        the next commit would have stored that position, losing its good records."""
        decoded: list[tuple[Any, Any]] = []
        try:
            for records in fetched:
                for record in records:
                    try:
                        decoded.append((record, self.codec.decode(record.value)))
                    except Exception as error:  # not only AvroError: a null value, say
                        # (any failure here would otherwise rewind the poll for ever)
                        self._dead_letter(record, str(error) if isinstance(error, AvroError)
                                          else f"{type(error).__name__}: {error}")
        except BaseException:
            self._rewind(fetched)
            raise
        return decoded

    def _rewind(self, fetched: list[list[Any]]) -> None:
        for records in fetched:
            if records:
                first = records[0]
                with suppress(Exception):  # a partition revoked since: its owner rereads it
                    self._consumer.seek(TopicPartition(first.topic, first.partition),
                                        first.offset)

    def _dead_letter(self, record: Any, error: str) -> None:
        where = f"{record.topic} partition {record.partition} offset {record.offset}"
        log.error("undecodable record at %s: %s; moved to %s", where, error,
                  self.kafka.dead_letters(record.topic))
        headers = [("error", error.encode()), ("topic", record.topic.encode()),
                   ("partition", str(record.partition).encode()),
                   ("offset", str(record.offset).encode())]
        self._letters.deliver(self.kafka.dead_letters(record.topic),
                              [Outgoing(record.key, record.value, headers=headers)],
                              timeout=30)
        self.dead_letters += 1

    def commit(self) -> None:
        self._consumer.commit()

    def leave(self) -> None:
        """Leaves the group at once (its partitions go to the others now, not after the
        session timeout) and stops consuming."""
        with suppress(Exception):
            self._consumer.close(autocommit=False)

    def close(self) -> None:
        with suppress(Exception):
            self._consumer.close(autocommit=False)
        self._letters.close()


class KafkaEventFeed(_KafkaFeed):
    """`EventFeed` over the events topic. `from_start`: read each newly assigned partition
    from its beginning (an agent rebuilding the state of the tenants it takes over)."""

    def __init__(self, kafka: KafkaSettings, group: str, codec: AvroCodec, **options: Any) -> None:
        super().__init__(kafka, kafka.events_topic, group, codec, **options)

    def read(self, limit: int = 500, timeout: float = 1.0) -> list[FeedItem]:
        fetched = self._fetch(limit, timeout)  # the wait, with the collector on
        with gc_paused():
            return [FeedItem(decoded.position, decoded.tenant, decoded.value,
                             record.partition, record.offset)
                    for record, decoded in self._decode(fetched)
                    if not isinstance(decoded.value, StatusObservation)]


class KafkaStatusFeed(_KafkaFeed):
    def __init__(self, kafka: KafkaSettings, group: str, codec: AvroCodec, **options: Any) -> None:
        super().__init__(kafka, kafka.status_topic, group, codec, **options)

    def read(self, limit: int = 500, timeout: float = 1.0
             ) -> list[StatusObservation | AgentHeartbeat]:
        return [decoded.value for _, decoded in self._poll(limit, timeout)
                if isinstance(decoded.value, StatusObservation | AgentHeartbeat)]


class TakeoverWatch:
    """A stopping agent's view of the status topic: which of its trunks another agent has
    reported on since the stop began (registered, or failed: anything but still
    registering). Positioned at the end when made, before the agent leaves the group,
    so no report of the new owners is missed; tansu's end is approximate, so older
    records are told apart by time."""

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, agent_id: str) -> None:
        self.codec = codec
        self.agent_id = agent_id
        self.since = datetime.now(UTC) - timedelta(seconds=1)
        self._consumer = KafkaConsumer(**client(kafka),
                                       enable_auto_commit=False,
                                       client_id=f"trunkplane-handover-{agent_id}")
        parts = [TopicPartition(kafka.status_topic, p) for p in sorted(
            self._consumer.partitions_for_topic(kafka.status_topic) or ())]
        self._consumer.assign(parts)
        self._consumer.seek_to_end(*parts)
        for part in parts:
            self._consumer.position(part)  # resolved now, not at the first poll

    def __call__(self, trunks: set[str], wait: float) -> set[str]:
        seen: set[str] = set()
        deadline = time.monotonic() + wait
        try:
            while not trunks <= seen and time.monotonic() < deadline:
                for records in self._consumer.poll(timeout_ms=200).values():
                    seen |= {o.trunk_id for o in self._reports(records)
                             if o.trunk_id in trunks}
        finally:
            self.close()
        return seen

    def _reports(self, records: list[Any]) -> Iterable[StatusObservation]:
        for record in records:
            try:
                value = self.codec.decode(record.value).value
            except AvroError:
                continue
            if (isinstance(value, StatusObservation) and value.agent_id != self.agent_id
                    and value.observed_at >= self.since
                    and value.state != TrunkState.REGISTERING):
                yield value

    def close(self) -> None:
        with suppress(Exception):
            self._consumer.close(autocommit=False)


class KafkaStatusSink:
    """`StatusSink` onto the status topic, keyed by trunk id (compacted: the newest
    observation of each trunk survives).

    kafka-python 3 has no bound on what a producer buffers, so a send that fails takes
    its producer with it (and everything that producer held: the caller keeps the newest
    observation of each trunk and sends it again); the next send builds a new one, after
    a back-off that doubles up to 10 s. That also recovers from fatal producer errors
    (an InitProducerId that failed left the old producer jammed for good)."""

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec) -> None:
        self._topic = kafka.status_topic
        self._codec = codec
        self._producer = LazyProducer(lambda: producer(kafka, "trunkplane-status"))
        self._lock = threading.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self._producer.get()  # fails now if no broker

    def publish(self, observations: Sequence[StatusObservation]) -> None:
        self._send([Outgoing(o.trunk_id.encode(), self._codec.encode_status(o))
                    for o in observations])

    def announce(self, heartbeat: AgentHeartbeat) -> None:
        self._send([Outgoing(f"agent:{heartbeat.agent_id}".encode(),
                             self._codec.encode_heartbeat(heartbeat))])

    def _send(self, records: list[Outgoing]) -> None:
        with self._lock:
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise KafkaError(f"status topic unreachable; next try in {wait:.1f} s")
            try:
                self._producer.deliver(self._topic, records, timeout=10)
            except Exception:
                self._failures += 1
                self._retry_at = time.monotonic() + min(10.0, 0.5 * 2 ** self._failures)
                raise
            self._failures = 0

    def close(self) -> None:
        with self._lock:
            self._producer.close()


class _Reader(Protocol[T]):
    def read(self, limit: int = 500, timeout: float = 1.0) -> list[T]: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class Pump(Generic[T]):
    """The control plane's end of a topic: what its feed reads goes into `store`, and is
    committed once stored. A batch the store refused (the broker or the store away) is
    written again, a second later, before anything newer is read."""

    def __init__(self, name: str, feed: _Reader[T],
                 store: Callable[[Sequence[T]], None]) -> None:
        self.name = name
        self.feed = feed
        self.store = store
        self.stored = 0  # records stored since the start
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-pump",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.feed.close()

    def _loop(self) -> None:
        pending: list[T] = []
        while not self._stopping.is_set():
            try:
                pending = pending or self.feed.read(timeout=0.5)
                if pending:
                    self.store(pending)
                    self.stored += len(pending)
                    pending = []
                    # a failed commit is not retried with the batch: kafka-python rejoins
                    # a group it was dropped from only inside a read, so holding the batch
                    # stored it every second for ever; the records come again uncommitted
                    # and storing them twice changes nothing
                    self.feed.commit()
            except Exception as error:  # the broker or the store is away: keep trying
                log.warning("%s pump: %s; %d records waiting, retrying", self.name, error,
                            len(pending))
                self._stopping.wait(1.0)


class StatusPump(Pump[StatusObservation | AgentHeartbeat]):
    """The status topic into the status view: observations to `sink`, heartbeats to
    `announce` (both idempotent, so a batch written again is harmless)."""

    def __init__(self, feed: KafkaStatusFeed, sink: Callable[[Sequence[StatusObservation]], None],
                 announce: Callable[[AgentHeartbeat], None] = lambda heartbeat: None) -> None:
        def store(records: Sequence[StatusObservation | AgentHeartbeat]) -> None:
            observations = [r for r in records if isinstance(r, StatusObservation)]
            if observations:
                sink(observations)
            for record in records:
                if isinstance(record, AgentHeartbeat):
                    announce(record)

        super().__init__("status", feed, store)


def seed_from_status(kafka: KafkaSettings, codec: AvroCodec, partitions: list[int],
                     seed: Callable[[str, str, int, int], None], ttl: float,
                     timeout: float = 30.0, skew: float | None = None) -> int:
    """An agent that takes over partitions learns the calls in progress on their tenants'
    trunks from the newest observation of each trunk on the status topic (the last
    record of its key, whoever made it), so it never admits more than the limits while
    those calls last. Returns how many trunks it seeded.

    An observation older than the lease TTL counts for nothing (its leases have expired
    since), so only what the broker took in the last `ttl` + `skew` seconds is read
    (`seek_since`; `skew`: how far the clocks of the agents and the broker may differ,
    one TTL unless given: a broker that stamps records with its own clock, tansu or
    LogAppendTime, may lag the agents'):
    the scan costs the recent traffic, not the topic's history (on a broker that does
    not compact, tansu, every report since the topic began: 11.4 s against 4.2 s for
    the same 10,000 trunks with a longer history). It is bounded by `timeout`; if cut, a
    warning says so and calls it did not read may be admitted past a limit for one
    lease TTL."""
    since = max(datetime.now(UTC) - timedelta(seconds=ttl + (ttl if skew is None else skew)),
                datetime.fromtimestamp(0, UTC))
    consumer = KafkaConsumer(**client(kafka), enable_auto_commit=False,
                             client_id="trunkplane-seed")
    try:
        events = consumer.partitions_for_topic(kafka.events_topic) or set()
        # only the last record of each key (a trunk's reports, or an agent's heartbeats)
        # is decoded: what compaction keeps; on a broker that does not compact, a trunk's
        # every report in the window is there
        last: dict[bytes, Any] = {}
        for record in scan_topic(consumer, kafka.status_topic, timeout=timeout,
                                 since_ms=int(since.timestamp() * 1000)):
            last[record.key] = record
        newest: dict[str, StatusObservation] = {}
        for record in last.values():
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
