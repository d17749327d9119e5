"""The relay: the store's notification log (the outbox) -> the events topic, with its
position recorded only after the broker acknowledged."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from kafka.errors import KafkaError

from domain.application import TrunkplaneApp
from domain.feeds import PositionStore, StoreEventFeed
from infra.config.settings import KafkaSettings
from infra.messaging.codec import AvroCodec
from infra.messaging.topics import producer
from infra.store.leader import RELAY_LOCK, Leader
from projections.db import Database

log = logging.getLogger(__name__)
RELAY = "relay"


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

    def __init__(self, app: TrunkplaneApp, codec: AvroCodec, kafka: KafkaSettings,
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
