"""What the registrar holds, sampled: Kamailio's location table (written through to its
SQLite database: `ul.dump` does not fit 300 bindings into one kamcmd reply) read every
`every` seconds, and per user the gaps (samples with no binding after it first had one)
and the most bindings seen at once."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from tests.kamailio import Kamailio


@dataclass
class Timeline:
    """One user's bindings over time."""

    seen: bool = False  # had a binding at some sample
    gaps: list[float] = field(default_factory=list)  # seconds without one, after that
    most: int = 0
    _gap_from: float | None = None

    def sample(self, at: float, count: int) -> None:
        self.most = max(self.most, count)
        if count:
            if self._gap_from is not None:
                self.gaps.append(at - self._gap_from)
                self._gap_from = None
            self.seen = True
        elif self.seen and self._gap_from is None:
            self._gap_from = at

    def open_gap(self, now: float) -> float:
        return now - self._gap_from if self._gap_from is not None else 0.0


class LocationSampler:
    def __init__(self, registrar: Kamailio, users: list[str], every: float = 0.1) -> None:
        self.registrar = registrar
        self.users = users
        self.every = every
        self.timelines = {u: Timeline() for u in users}
        self.samples = 0
        self.slowest = 0.0
        self.failures = 0
        self.last_error = ""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="location-sampler", daemon=True)

    def start(self) -> LocationSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def reset(self) -> None:
        """Forget the figures so far (a new scenario starts from what is registered)."""
        with self._lock:
            self.timelines = {u: Timeline() for u in self.users}

    def _run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                counts = self.registrar.bindings()
            except Exception as error:  # busy under load: the next sample counts
                self.failures += 1
                self.last_error = f"{type(error).__name__}: {error}"
                counts = None
            at = time.monotonic()
            if counts is not None:
                with self._lock:
                    for user, timeline in self.timelines.items():
                        timeline.sample(at, counts.get(user, 0))
                    self.samples += 1
                self.slowest = max(self.slowest, at - started)
            self._stopping.wait(max(0.0, self.every - (time.monotonic() - started)))

    def current(self) -> dict[str, int]:
        return self.registrar.bindings()

    def figures(self) -> dict[str, float]:
        """Trunk users with a gap, the longest gap, the most gaps of one user, the most
        bindings of one user at once."""
        now = time.monotonic()
        with self._lock:
            lines = list(self.timelines.values())
        gaps = [g for t in lines for g in (*t.gaps, t.open_gap(now)) if g > 0]
        return {"users": len(lines), "users_with_gap": sum(1 for t in lines if t.gaps or
                                                             t.open_gap(now)),
                "longest_gap_s": max(gaps, default=0.0),
                "most_gaps": max((len(t.gaps) for t in lines), default=0),
                "most_bindings": max((t.most for t in lines), default=0),
                "samples": self.samples, "slowest_sample_s": self.slowest,
                "failed_samples": self.failures}
