"""One reader of the status log for every watcher of a process (issue 16).

Each `WatchTrunkStatus` stream used to poll the log itself, twice a second and after each
accepted observation, and to build each change's message again: 1,000 watchers made 2,000
queries a second while nothing changed, and 1,000 queries and messages per change. The feed
reads the log once, builds each change's message once (`prepare`) and puts it on the queue
of each subscription of its tenant; a watcher only takes from its queue.

A watcher that resumes from an older position reads what it missed from the log itself, up
to the position the feed had when it subscribed (`Subscription.joined`); the feed delivers
everything after. A watcher that falls `MAX_BACKLOG` changes behind (a client that does not
read) is dropped from the feed and reads the log again from where it is, so a slow client
costs its own queries, never the feed's memory."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from projections.status import Doc, StatusView

log = logging.getLogger("trunkplane.status")
T = TypeVar("T")
BATCH = 1000  # log rows read at once
MAX_BACKLOG = 1_000  # changes waiting for one watcher before it is dropped from the feed
# (it then reads the log itself): 1,000 watchers x 10,000 held up to a gigabyte
SWEEP = 0.5  # seconds between two looks at whether each watcher's client is still there
WAKE_CHUNK = 16  # asyncio watchers woken per turn of their loop


@dataclass(eq=False)
class Subscription(Generic[T]):
    """The changes of one tenant (of the `wanted` trunks, or all) after `after`, for one
    watcher. `dropped`: it fell too far behind; `closed`: the watcher or the feed ended."""

    tenant: str
    after: int
    wanted: frozenset[str]
    alive: Callable[[], bool] = lambda: True  # False: the client or its token is gone
    joined: int = 0
    dropped: bool = False
    closed: bool = False
    left: bool = False  # the watcher left; the feed forgets it (see StatusFeed.leave)
    _items: queue.SimpleQueue[tuple[int, T] | None] = field(default_factory=queue.SimpleQueue)

    def take(self, timeout: float) -> list[tuple[int, T]]:
        """What has arrived, waiting up to `timeout` for the first: [] when nothing did."""
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            return []
        taken: list[tuple[int, T]] = []
        while item is not None:
            taken.append(item)
            try:
                item = self._items.get_nowait()
            except queue.Empty:
                break
        return taken

    def close(self) -> None:
        """Wakes the watcher; also gRPC's callback when the client goes away."""
        self.closed = True
        self._items.put(None)

    def wants(self, position: int, trunk_id: str) -> bool:
        return (not self.left and position > self.after
                and (not self.wanted or trunk_id in self.wanted))

    def put(self, position: int, item: T) -> bool:
        """False when the watcher is too far behind to be given more."""
        if self._items.qsize() >= MAX_BACKLOG:
            self.dropped = True
            self._items.put(None)
            return False
        self._items.put((position, item))
        return True


@dataclass(eq=False)
class AsyncSubscription(Subscription[T]):
    """A subscription taken by a coroutine of `loop` (the asyncio gRPC server's): the feed
    thread appends, and wakes every waiting watcher of a delivery with one call to the loop
    (`StatusFeed._deliver`), not one per watcher."""

    loop: asyncio.AbstractEventLoop | None = None
    _pending: deque[tuple[int, T]] = field(default_factory=deque)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def take_async(self) -> list[tuple[int, T]]:
        """What has arrived, waiting for it: [] once closed or dropped."""
        while True:
            self._arrived.clear()
            if self._pending or self.closed or self.dropped:
                break
            await self._arrived.wait()
        taken: list[tuple[int, T]] = []
        while self._pending:
            taken.append(self._pending.popleft())
        return taken

    def put(self, position: int, item: T) -> bool:
        """Called by the feed, which then wakes the watcher (`wake`)."""
        if len(self._pending) >= MAX_BACKLOG:
            self.dropped = True
            return False
        self._pending.append((position, item))
        return True

    def wake(self) -> None:
        """On the loop: the watcher looks at what arrived."""
        self._arrived.set()

    def close(self) -> None:
        self.closed = True
        if self.loop is not None:
            with suppress(RuntimeError):  # the loop is closed: nobody waits any more
                self.loop.call_soon_threadsafe(self._arrived.set)


def _wake_all(subscriptions: list[AsyncSubscription[Any]], start: int = 0) -> None:
    """Wakes `WAKE_CHUNK` watchers, and the next ones at the loop's next turn: calls
    waiting on the loop (admission) pass between two chunks, where waking 1,000 at once
    put 1,000 sends ahead of them."""
    end = start + WAKE_CHUNK
    for subscription in subscriptions[start:end]:
        subscription.wake()
    if end < len(subscriptions):
        asyncio.get_running_loop().call_soon(_wake_all, subscriptions, end)


class StatusFeed(Generic[T]):
    """Reads the log in one thread (started by the first subscription) and fans out.
    `prepare(tenant, position, observation)` builds the message of a change, or None when
    it is not to be shown (its trunk is gone)."""

    def __init__(self, status: StatusView, prepare: Callable[[str, int, Doc], T | None],
                 poll: float = 0.5) -> None:
        self.status = status
        self.prepare = prepare
        self.poll = poll
        self._subscriptions: dict[str, set[Subscription[T]]] = {}
        self._lock = threading.Lock()
        self._position = 0
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def subscribe(self, tenant: str, after: int, wanted: frozenset[str],
                  alive: Callable[[], bool] = lambda: True,
                  loop: asyncio.AbstractEventLoop | None = None) -> Subscription[T]:
        """A subscription receiving the changes after the feed's position (`joined`), closed
        by the feed within `SWEEP` seconds once `alive()` says no (so an idle watcher need
        not wake to ask); one made after `stop` is closed. With `loop`, an
        `AsyncSubscription` for a coroutine of that loop."""
        with self._lock:
            if self._thread is None and not self._stopped.is_set():
                self._position = self.status.head()
                self._thread = threading.Thread(target=self._run, name="status-feed",
                                                daemon=True)
                self._thread.start()
            subscription: Subscription[T] = (
                Subscription(tenant, after, wanted, alive, joined=self._position)
                if loop is None else
                AsyncSubscription(tenant, after, wanted, alive, joined=self._position,
                                  loop=loop))
            if self._stopped.is_set():
                subscription.close()
            else:
                self._subscriptions.setdefault(tenant, set()).add(subscription)
        return subscription

    def leave(self, subscription: Subscription[T]) -> None:
        """Never waits for a delivery in progress, which holds the lock across up to
        BATCH rows and their reads: the asyncio server calls this on its event loop. If
        the lock is busy the subscription is only marked; it receives nothing more, and
        the next sweep forgets it."""
        subscription.left = True
        if self._lock.acquire(blocking=False):
            try:
                self._forget(subscription)
            finally:
                self._lock.release()

    def watchers(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subscriptions.values())

    def start(self) -> None:
        """Nothing: the first subscription starts the reader."""

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            for subscriptions in self._subscriptions.values():
                for subscription in subscriptions:
                    subscription.close()
            self._subscriptions.clear()
        self.status.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        swept = time.monotonic()
        while not self._stopped.is_set():
            if time.monotonic() - swept >= SWEEP:
                swept = time.monotonic()
                self._sweep()
            seen = self.status.version
            try:
                rows = self.status.changes_since(self._position, BATCH)
                if rows:
                    self._deliver(rows)
            except Exception:  # the database is away: the watchers wait, the feed retries
                log.exception("status feed: cannot read the status log; retrying")
                rows = []
                self._stopped.wait(self.poll)
            if len(rows) < BATCH:
                self.status.wait(self.poll, seen)

    def _sweep(self) -> None:
        """Closes the subscriptions whose client or token is gone: one thread asks them
        all, where 1,000 idle watchers each waking to ask cost 1,000 thread switches."""
        with self._lock:
            every = [s for subscriptions in self._subscriptions.values() for s in subscriptions]
        gone = []
        for subscription in every:
            try:
                if subscription.left or not subscription.alive():
                    gone.append(subscription)
            except Exception:  # a context that cannot answer is not kept
                gone.append(subscription)
        with self._lock:
            for subscription in gone:
                self._forget(subscription)
                subscription.close()

    def _deliver(self, rows: list[tuple[int, Doc]]) -> None:
        woken: dict[asyncio.AbstractEventLoop, set[AsyncSubscription[T]]] = {}
        with self._lock:
            for position, observed in rows:
                self._fan_out(position, observed, woken)
                self._position = position
        for loop, subscriptions in woken.items():  # one call to each loop for them all
            with suppress(RuntimeError):  # a loop closed: its server is gone
                loop.call_soon_threadsafe(_wake_all, list(subscriptions))

    def _fan_out(self, position: int, observed: Doc,
                 woken: dict[asyncio.AbstractEventLoop, set[AsyncSubscription[T]]]) -> None:
        tenant, trunk_id = observed["tenant"], observed["trunk_id"]
        receivers = [s for s in self._subscriptions.get(tenant, ())
                     if s.wants(position, trunk_id)]
        if not receivers:
            return
        try:
            message = self.prepare(tenant, position, observed)
        except Exception:  # one row that cannot be shown must not stall every watcher
            log.exception("status feed: skipped the report at position %d", position)
            return
        if message is None:
            return
        for subscription in receivers:
            if not subscription.put(position, message):
                self._forget(subscription)
            if isinstance(subscription, AsyncSubscription) and subscription.loop is not None:
                woken.setdefault(subscription.loop, set()).add(subscription)

    def _forget(self, subscription: Subscription[T]) -> None:
        subscriptions = self._subscriptions.get(subscription.tenant)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._subscriptions[subscription.tenant]
