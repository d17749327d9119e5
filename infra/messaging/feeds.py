"""The Kafka implementations of `EventFeed`, `StatusSink` and the status feed, the status
pump into the control plane's view, and the status-topic scan that seeds inherited calls."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from domain.feeds import FeedItem
from domain.status import AgentHeartbeat, StatusObservation
from infra.config.settings import KafkaSettings
from infra.messaging.codec import AvroCodec, AvroError
from infra.messaging.topics import partition_of, producer, scan_topic

log = logging.getLogger(__name__)


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

    def __init__(self, kafka: KafkaSettings, topic: str, group: str, codec: AvroCodec,
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

    def __init__(self, kafka: KafkaSettings, group: str, codec: AvroCodec, **options: Any) -> None:
        super().__init__(kafka, kafka.events_topic, group, codec, **options)

    def read(self, limit: int = 500, timeout: float = 1.0) -> list[FeedItem]:
        return [FeedItem(decoded.position, decoded.tenant, decoded.value, record.partition)
                for record, decoded in self._poll(limit, timeout)
                if not isinstance(decoded.value, StatusObservation)]


class KafkaStatusFeed(_KafkaFeed):
    def __init__(self, kafka: KafkaSettings, group: str, codec: AvroCodec, **options: Any) -> None:
        super().__init__(kafka, kafka.status_topic, group, codec, **options)

    def read(self, limit: int = 500, timeout: float = 1.0
             ) -> list[StatusObservation | AgentHeartbeat]:
        return [decoded.value for _, decoded in self._poll(limit, timeout)
                if isinstance(decoded.value, StatusObservation | AgentHeartbeat)]


class KafkaStatusSink:
    """`StatusSink` onto the status topic, keyed by trunk id (compacted: the newest
    observation of each trunk survives)."""

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec) -> None:
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


def seed_from_status(kafka: KafkaSettings, codec: AvroCodec, partitions: list[int],
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
