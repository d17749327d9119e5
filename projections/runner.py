"""Feeds the log to the views: a background thread keeps the live generations current;
rebuilds and replays feed a generation of their own."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.application import TrunkplaneApp
from projections.views import ViewStore

log = logging.getLogger(__name__)
BATCH = 1000
Progress = Callable[[int, int], None]  # (position reached, head)


@dataclass(frozen=True)
class Until:
    position: int | None = None
    time: datetime | None = None


class ProjectionRunner:
    def __init__(self, app: TrunkplaneApp, store: ViewStore, batch: int = BATCH,
                 poll: float = 0.2, leader: Callable[[], bool] | None = None) -> None:
        """leader: whether this process should apply the log now (control planes sharing a
        store elect one); None: always. Reads and waits work either way."""
        self.leader = leader
        self.app = app
        self.store = store
        self.batch = batch
        self.poll = poll
        self._changed = threading.Condition()
        self._round = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="projections", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)
        release = getattr(self.leader, "release", None)
        if release is not None:
            release()

    def notify(self) -> None:
        """New events were stored: look now instead of at the next poll."""
        with self._changed:
            self._changed.notify_all()

    def catch_up_live(self) -> None:
        with self._round:
            for name in self.store.projections:
                self.catch_up(name, self.store.live(name))

    def catch_up(self, name: str, gen: int, until: Until | None = None,
                 progress: Progress | None = None) -> int:
        """Applies the log to one generation, batch by batch, up to `until` or the head."""
        position, _ = self.store.position(name, gen)
        head = self.app.head() if until is None or until.position is None else until.position
        while position < head:
            notifications = self.app.recorder.select_notifications(
                position, self.batch, stop=head, inclusive_of_start=False)
            if not notifications:
                break
            batch: list[tuple[int, Any, Any]] = [
                (n.id, self.app.mapper.to_domain_event(n), n) for n in notifications]
            if until is not None and until.time is not None:
                batch = [item for item in batch if item[1].timestamp <= until.time]
                if not batch:
                    break
            self.store.apply(name, gen, batch)
            position = batch[-1][0]
            if progress is not None:
                progress(position, head)
            with self._changed:
                self._changed.notify_all()
            if len(batch) < len(notifications):
                break
        return position

    def rebuild(self, name: str, progress: Progress | None = None) -> int:
        """Fills a new generation from the first event while the live one keeps serving,
        then swaps it in. Returns the new generation."""
        gen = self.store.begin_rebuild(name)
        self.catch_up(name, gen, progress=progress)
        with self._round:  # the live view stops moving while the new one takes the last step
            self.catch_up(name, gen, progress=progress)
            self.store.swap(name, gen)
        return gen

    def wait_for(self, position: int, timeout: float) -> bool:
        """True once every live view has applied the log up to `position`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._reached(position):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.notify_all()
                self._changed.wait(min(left, self.poll))
        return True

    def _reached(self, position: int) -> bool:
        return all(self.store.position(n, self.store.live(n))[0] >= min(position, self.app.head())
                   for n in self.store.projections)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.leader is None or self.leader():
                    self.catch_up_live()
                self.failure = None
            except Exception as error:  # keep serving the views we have; retry next round
                if self.failure is None:
                    log.exception("projection round failed; retrying")
                self.failure = error
            with self._changed:
                self._changed.wait(self.poll)


def describe(app: TrunkplaneApp, store: ViewStore) -> list[dict[str, Any]]:
    """Each live view's position, the log's head, and the lag in events and seconds."""
    head = app.head()
    head_time = _time_at(app, head)
    rows = []
    for name in store.projections:
        gen = store.live(name)
        position, event_time = store.position(name, gen)
        lag_seconds = 0.0
        if position < head and head_time is not None:
            applied = datetime.fromisoformat(event_time) if event_time else None
            first_missing = _time_at(app, position + 1)
            since = applied or first_missing
            lag_seconds = max(0.0, (head_time - since).total_seconds()) if since else 0.0
        rows.append({"name": name, "generation": gen, "position": position, "head": head,
                     "lag_events": head - position, "lag_seconds": lag_seconds})
    return rows


def _time_at(app: TrunkplaneApp, position: int) -> datetime | None:
    if position <= 0:
        return None
    found = app.recorder.select_notifications(position, 1)
    if not found:
        return None
    event: Any = app.mapper.to_domain_event(found[0])
    moment: datetime = event.timestamp
    return moment
