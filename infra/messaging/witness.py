"""The broker as a second witness of the log: every signed tree head the control plane
keeps is also published to the heads topic (Avro, like the other topics), in order, and the
position of the last one published is recorded only after the broker acknowledged it. A
head rewritten in the database later still disagrees with the copy in Kafka."""

from __future__ import annotations

import logging
import threading
from contextlib import suppress
from typing import Any

from infra.config.settings import KafkaSettings
from infra.ledger.proofs import Ledger
from infra.messaging.codec import AvroCodec
from infra.messaging.relay import DatabasePositions
from infra.messaging.topics import producer
from infra.store.leader import Leader

log = logging.getLogger(__name__)
POSITION = "heads"  # in DatabasePositions: the tree size of the last head published
HEADS_LOCK = 0x7472_756E_6B73


class HeadWitness:
    def __init__(self, ledger: Ledger, codec: AvroCodec, kafka: KafkaSettings,
                 positions: DatabasePositions, leader: Leader | None = None,
                 interval: float = 1.0) -> None:
        self.ledger = ledger
        self.codec = codec
        self.kafka = kafka
        self.positions = positions
        self.leader = leader or Leader("", HEADS_LOCK)
        self.interval = interval
        self.published = 0
        self._producer: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="heads", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._producer is not None:
            with suppress(Exception):
                self._producer.close(timeout=5)
        self.leader.release()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.leader.acquire():
                    self.publish_new()
            except Exception:  # the broker away: the same heads go out on the next turn
                log.warning("publishing signed heads failed; retrying", exc_info=True)
            self._stop.wait(self.interval)

    def publish_new(self) -> int:
        """Publishes the kept heads after the last one acknowledged; returns how many."""
        if self._producer is None:
            self._producer = producer(self.kafka, "trunkplane-heads")
        after = self.positions.load(POSITION)
        heads = self.ledger.heads(after)
        if not heads:
            return 0
        sends = [self._producer.send(
            self.kafka.heads_topic, key=b"heads",
            value=self.codec.encode_head(head, self.ledger.position_of(head.size)))
            for head in heads]
        self._producer.flush(timeout=30)
        for future in sends:
            future.get(timeout=0)  # the broker's error for a head it did not take
        self.positions.save(POSITION, heads[-1].size)
        self.published += len(heads)
        return len(heads)
