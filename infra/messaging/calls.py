"""Call records in the distributed mode: agents publish them to the calls topic (keyed by
tenant, Avro like the other topics) and the control planes pump them into their store.
Published at least once; the store keeps one row per call, so a redelivery is harmless."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from domain.calls import CallRecord
from infra.config.settings import KafkaSettings
from infra.messaging.codec import AvroCodec
from infra.messaging.feeds import _KafkaFeed
from infra.messaging.topics import LazyProducer, Outgoing, producer

log = logging.getLogger(__name__)


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


class CallPump:
    """The control plane's end of the calls topic: records into the store, committed after
    they are stored. A batch the store refused is written again before anything newer."""

    def __init__(self, feed: KafkaCallFeed,
                 store: Callable[[Sequence[CallRecord]], None]) -> None:
        self.feed = feed
        self.store = store
        self.stored = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="call-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.feed.close()

    def _loop(self) -> None:
        pending: list[CallRecord] = []
        while not self._stopping.is_set():
            try:
                pending = pending or self.feed.read(timeout=0.5)
                if pending:
                    self.store(pending)
                    self.feed.commit()
                    self.stored += len(pending)
                    pending = []
            except Exception as error:  # the broker or the store is away: keep trying
                log.warning("call records: %s; %d waiting, retrying", error, len(pending))
                self._stopping.wait(1.0)
