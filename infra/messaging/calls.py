"""Call records in the distributed mode: agents publish them to the calls topic (keyed by
tenant, Avro like the other topics) and the control planes pump them into their store.
Published at least once; the store keeps one row per call, so a redelivery is harmless."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from domain.calls import CallRecord
from infra.config.settings import KafkaSettings
from infra.messaging.codec import AvroCodec
from infra.messaging.feeds import Pump, _KafkaFeed
from infra.messaging.topics import LazyProducer, Outgoing, producer


class KafkaCallSink:
    """The writer behind the agent's QueuedCallSink: returns once the broker acknowledged
    every record, raises otherwise (the queue keeps them for the next flush, which a new
    producer sends: a failed one is dropped, as every publisher's)."""

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec) -> None:
        self._topic = kafka.calls_topic
        self._codec = codec
        self._producer = LazyProducer(lambda: producer(kafka, "trunkplane-calls"))
        self._producer.get()  # fails now if no broker

    def publish(self, records: Sequence[CallRecord]) -> None:
        self._producer.deliver(self._topic, [Outgoing(r.tenant.encode(),
                                                      self._codec.encode_call(r))
                                             for r in records], timeout=30)

    def close(self) -> None:
        self._producer.close()


class KafkaCallFeed(_KafkaFeed):
    def __init__(self, kafka: KafkaSettings, group: str, codec: AvroCodec,
                 **options: Any) -> None:
        super().__init__(kafka, kafka.calls_topic, group, codec, **options)

    def read(self, limit: int = 500, timeout: float = 1.0) -> list[CallRecord]:
        return [decoded.value for _, decoded in self._poll(limit, timeout)
                if isinstance(decoded.value, CallRecord)]


class CallPump(Pump[CallRecord]):
    """The calls topic into the control plane's store."""

    def __init__(self, feed: KafkaCallFeed,
                 store: Callable[[Sequence[CallRecord]], None]) -> None:
        super().__init__("call", feed, store)
