"""What keeps one caller from starving the others, and a revoked token from keeping what
it opened (issue 20).

The gRPC server runs calls on a pool of threads, and a server stream holds one of them for
as long as it is open: 32 idle streams once stopped every other call. So streams are
counted apart from unary calls, per caller and in total, refused beyond the cap at once
(RESOURCE_EXHAUSTED), and run on a pool of their own (issue 16), so the unary calls keep
all of theirs. Before authentication,
calls are counted per client address (failed authentications much more strictly), and
after it, besides each principal's own limit, all principals together have a ceiling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

REVOCATION_CHECK = 0.5  # seconds: how late an open stream may learn its token was revoked
MAX_BUCKETS = 10_000  # addresses remembered at once; full buckets are forgotten first


class StreamGate:
    """Open streams per caller and in total."""

    def __init__(self, per_caller: int, total: int) -> None:
        self.per_caller = per_caller
        self.total = total
        self._open: dict[str, int] = {}
        self._count = 0
        self._lock = threading.Lock()

    def enter(self, caller: str) -> str:
        """'' when the stream may open (and is counted), else why it may not."""
        with self._lock:
            if self._count >= self.total:
                return (f"the server has {self.total} streams open, its limit; retry later "
                        "(TRUNKPLANE_MAX_STREAMS)")
            mine = self._open.get(caller, 0)
            if mine >= self.per_caller:
                return (f"{caller} has {mine} streams open, the limit per caller "
                        "(TRUNKPLANE_MAX_STREAMS_PER_CALLER); close one first")
            self._open[caller] = mine + 1
            self._count += 1
            return ""

    def leave(self, caller: str) -> None:
        with self._lock:
            left = self._open.get(caller, 0) - 1
            if left > 0:
                self._open[caller] = left
            else:
                self._open.pop(caller, None)
            self._count = max(0, self._count - 1)


class Buckets:
    """Token buckets by key (`rate` a second, bursts of `burst`) that forget idle keys, so
    a flood from many addresses cannot grow memory without bound."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> float:
        """0 when allowed (the cost is taken), else the seconds until it would be."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens = self._level(key, now)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / self.rate

    def empty(self, key: str) -> float:
        """Like `take` without taking: the seconds until one token is there."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            tokens = self._level(key, time.monotonic())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def _level(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (self.burst, now))
        if len(self._buckets) > MAX_BUCKETS:
            self._forget_full(now)
        return min(self.burst, tokens + (now - then) * self.rate)

    def _forget_full(self, now: float) -> None:
        full = [k for k, (tokens, then) in self._buckets.items()
                if tokens + (now - then) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]


def peer_address(context: grpc.ServicerContext) -> str:
    """The client's address without its port: `ipv4:127.0.0.1:5555` -> `127.0.0.1`."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer or "unknown"


class RevocableContext:
    """The servicer's context, inactive as soon as the caller's token is revoked or
    expires: a stream that loops `while context.is_active()` ends within one turn."""

    def __init__(self, context: grpc.ServicerContext, still_valid: Callable[[], bool],
                 every: float = REVOCATION_CHECK) -> None:
        self._context = context
        self._still_valid = still_valid
        self._every = every
        self._checked = time.monotonic()
        self.revoked = False

    def is_active(self) -> bool:
        """Asked between messages and while idle; the token itself at most every `every`
        seconds (a stat of the tokens file: 1,000 watchers asked it thousands of times a
        second for the same answer)."""
        now = time.monotonic()
        if not self.revoked and now - self._checked >= self._every:
            self._checked = now
            self.revoked = not self._still_valid()
        return not self.revoked and bool(self._context.is_active())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


@dataclass(frozen=True)
class Guards:
    """The limits the interceptor applies; the defaults are the settings' defaults."""

    streams: StreamGate = field(default_factory=lambda: StreamGate(64, 1000))
    per_address: Buckets = field(default_factory=lambda: Buckets(2000, 4000))
    failures: Buckets = field(default_factory=lambda: Buckets(10, 20))
    total: Buckets = field(default_factory=lambda: Buckets(5000, 10000))
