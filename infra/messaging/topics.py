"""The distributed mode's topics: set-up (`trunkplane kafka init`), the producer every
publisher uses, and reading a whole topic. Works with any Kafka-protocol broker through
kafka-python; nothing here knows which."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from infra.config.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicResult:
    name: str
    created: bool
    detail: str


def init_topics(kafka: KafkaSettings, timeout: float = 30.0) -> list[TopicResult]:
    """Creates the events, status, calls and heads topics and the dead-letter topics; topics
    that exist are left as they are. Idempotent."""
    events = {"retention.ms": str(kafka.events_retention_ms), "cleanup.policy": "delete"}
    status = {"cleanup.policy": "compact", "retention.ms": str(kafka.status_retention_ms)}
    calls = {"retention.ms": str(kafka.calls_retention_ms), "cleanup.policy": "delete"}
    letters = {"retention.ms": str(30 * 24 * 3600 * 1000), "cleanup.policy": "delete"}
    wanted = [
        (kafka.events_topic, kafka.partitions, events),
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


def producer(kafka: KafkaSettings, client_id: str) -> KafkaProducer:
    """acks=all and idempotence: a retried send is never written twice, and a record is
    acknowledged only when every in-sync replica has it."""
    return KafkaProducer(
        bootstrap_servers=kafka.bootstrap, client_id=client_id, acks="all",
        enable_idempotence=True, linger_ms=5, batch_size=256 * 1024,
        max_in_flight_requests_per_connection=5, request_timeout_ms=15000,
        retry_backoff_ms=200, reconnect_backoff_max_ms=2000)


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


def partition_of(key: bytes, partitions: list[int]) -> int:
    """The partition the producer's default partitioner (murmur2, as Java's) picks."""
    from kafka.partitioner.default import murmur2

    every = sorted(partitions)
    index: int = murmur2(key) & 0x7FFFFFFF
    return every[index % len(every)]
