"""The relay: the store's notification log (the outbox) -> the events topic, with its
position recorded only after the broker acknowledged."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError

from domain.application import TrunkplaneApp
from domain.feeds import PositionStore, StoreEventFeed
from infra.config.settings import KafkaSettings
from infra.messaging.codec import AvroCodec, gc_paused
from infra.messaging.topics import (
    LazyProducer,
    Outgoing,
    TopicError,
    producer,
    topic_is_empty,
    topic_problem,
)
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


def position_name(client: Any, topic: str) -> str:
    """The relay's position is kept per cluster and topic: `client` (a producer that has
    fetched metadata) tells the cluster id."""
    cluster = str(getattr(getattr(client, "_metadata", None), "cluster_id", "") or "unknown")
    return f"{RELAY}:{cluster}:{topic}"


class Relay:
    """Publishes the notification log to the events topic, in order, and records the new
    position only after the broker acknowledged every record of the batch. A crash at
    any point republishes from the last recorded position: at least once, never lost.

    The position belongs to a broker cluster and a topic (its name carries both): a new
    cluster starts from the beginning of the log. When it leads, after the broker was
    away and every `check_every` seconds, the relay also checks that the topic still
    holds records; an emptied topic (a broker that lost its data) is republished from
    the beginning, logged as an error and counted (`heals`, `republished`). Lowering
    the stored position by hand (`trunkplane kafka republish`) is noticed within
    `check_every` too (10 s)."""

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
        self._producer = LazyProducer(make_producer
                                      or (lambda: producer(kafka, "trunkplane-relay")))
        self._positions = positions
        self._feed = StoreEventFeed(app, RELAY, positions)
        self.check_every = 10.0
        self._checked = 0.0  # time.monotonic() of the last broker check
        self._republish_until = 0  # positions at or below it go out a second time
        self._healed_at = 0
        self.heals = 0
        self.republished = 0
        self.cluster = ""
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
        with gc_paused():
            items = self._feed.read(self.batch, timeout=0)
        if not self._feed.uncommitted:
            return 0
        try:
            sent = self._producer.deliver(self.kafka.events_topic, (Outgoing(
                item.tenant.encode(),
                self.codec.encode_event(item.event, item.position, item.tenant))
                for item in items), timeout=self.flush_timeout, quiet_gc=True)
        except BaseException:
            self._feed.rewind()  # the batch goes out again: at least once, never skipped
            raise
        self._feed.commit()
        self.published += sent
        self.republished += sum(1 for i in items if i.position <= self._republish_until)
        if self._on_published is not None:
            self._on_published(self.position, sent)
        return sent

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._producer.close()
        self.leader.release()

    def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if not self.leading:
                self.leading = self.leader.acquire()
                if not self.leading:
                    self._stopping.wait(2.0)
                    continue
                self._checked = 0.0
            try:
                if time.monotonic() - self._checked >= self.check_every:
                    self.check_broker()
                sent = self.publish_once()
                failures = 0
                self.last_error = ""
            except Exception as error:  # broker away, or a bug: never die, keep saying so
                failures += 1
                self.last_error = f"{type(error).__name__}: {error}"
                pause = min(10.0, 0.5 * 2 ** min(failures, 6))  # cheap, and back soon
                if isinstance(error, KafkaError | OSError):
                    log.warning("relay: broker unavailable (%s); position stays %d, retrying "
                                "in %.1f s", self.last_error, self.position, pause)
                else:
                    log.exception("relay: publishing from position %d failed; retrying in "
                                  "%.1f s", self.position, pause)
                self._producer.drop()  # (after a failed check too: the broker may be new)
                self._checked = 0.0  # the broker may come back another, or emptied
                self._stopping.wait(pause)
                continue
            if not self.leader.holds():
                log.warning("relay: lost the relay lock; standing by")
                self.leading = False
                continue
            if sent == 0:
                self._wake.wait(0.2)
                self._wake.clear()

    def check_broker(self) -> None:
        """Which cluster and topic the position belongs to, whether the topic is as `kafka
        init` made it, and whether it lost what was published (then from the start)."""
        found = self._producer.get().partitions_for(self.kafka.events_topic)
        problem = topic_problem(self.kafka, self.kafka.events_topic, found)
        if problem:
            raise TopicError(problem)
        name = position_name(self._producer.get(), self.kafka.events_topic)
        cluster = name.split(":")[1]
        if name != self._feed.name or cluster != self.cluster:
            self.cluster = cluster
            self._feed = StoreEventFeed(self.app, name, self._positions)
            log.info("relay: cluster %s, topic %s: publishing from position %d", cluster,
                     self.kafka.events_topic, self.position)
        else:
            self._taken_up_by_hand()
        if self.position not in (0, self._healed_at) and topic_is_empty(
                self.kafka, self.kafka.events_topic):
            self._heal()
        self._checked = time.monotonic()

    def _taken_up_by_hand(self) -> None:
        """`trunkplane kafka republish` lowered the stored position: publish from there."""
        was = self.position
        self._feed.rewind(reload=True)
        if self.position < was:
            log.warning("relay: position lowered by hand from %d to %d: republishing", was,
                        self.position)
            self._republish_until = max(self._republish_until, was)

    def _heal(self) -> None:
        lost = self._healed_at = self.position  # (a log of only unpublished events: once)
        log.error("relay: topic %s on cluster %s holds no record, though positions up to "
                  "%d were published to it (a broker that lost its data, or a topic made "
                  "again): republishing from the beginning", self.kafka.events_topic,
                  self.cluster, lost)
        self.heals += 1
        self._republish_until = max(self._republish_until, lost)
        self._positions.save(self._feed.name, 0)
        self._feed.rewind(reload=True)
