"""A StatusSink for tests of the SIP engine: it keeps every observation and lets a test wait
for one (the newest of a trunk passing a test) or for a number of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from domain.status import StatusObservation, TrunkState


class Recorder:
    def __init__(self) -> None:
        self.seen: list[StatusObservation] = []
        self._changed = threading.Condition()

    def publish(self, observations: Sequence[StatusObservation]) -> None:
        with self._changed:
            self.seen += observations
            self._changed.notify_all()

    def latest(self, trunk_id: str) -> StatusObservation | None:
        with self._changed:
            return next((o for o in reversed(self.seen) if o.trunk_id == trunk_id), None)

    def reports(self, trunk_id: str) -> list[TrunkState]:
        with self._changed:
            return [o.state for o in self.seen if o.trunk_id == trunk_id]

    def wait(self, trunk_id: str, test: Callable[[StatusObservation], bool],
             timeout: float = 20.0) -> StatusObservation:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self.latest(trunk_id)
                if found is not None and test(found):
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"{trunk_id}: last seen {found}"
                self._changed.wait(left)

    def wait_count(self, trunk_id: str, count: int, timeout: float = 20.0) -> None:
        """Until the trunk has `count` reports."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.reports(trunk_id)) < count:
                left = deadline - time.monotonic()
                assert left > 0, self.reports(trunk_id)
                self._changed.wait(left)
