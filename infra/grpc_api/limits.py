"""Limits against abuse: a token bucket of requests per principal."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """`rate` requests per second per principal, in bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait_needed(self, principal: str) -> float:
        """0 when the request may go now (and takes a token), else seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(principal, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[principal] = (tokens - 1, now)
                return 0.0
            self._buckets[principal] = (tokens, now)
            return (1 - tokens) / self.rate
