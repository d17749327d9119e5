"""Unusual call patterns, seen by the agent as it admits calls: a burst far above an
extension's usual rate, many calls to a country the tenant has not called before, calls
outside the tenant's business hours. Each raises an alert (once per pattern and period,
not once per call); the agent records it in the history and shows it in the status."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from domain.guard import DAYS

log = logging.getLogger(__name__)

# ITU-T E.164 country codes of one and two digits; all others have three.
ONE_DIGIT = frozenset({"1", "7"})
TWO_DIGITS = frozenset(str(code) for code in (
    20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55,
    56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98))


def country_of(number: str) -> str | None:
    """The country code of an international number (+CC, 00CC, 011CC, or NANP 1 + ten
    digits); None for a national number."""
    digits = None
    for prefix in ("+", "00", "011"):
        if number.startswith(prefix):
            digits = number[len(prefix):]
            break
    if digits is None:
        if len(number) == 11 and number.startswith("1"):
            return "1"
        return None
    if not digits[:1].isdigit():
        return None
    if digits[:1] in ONE_DIGIT:
        return digits[:1]
    return digits[:2] if digits[:2] in TWO_DIGITS else digits[:3]


class _Window:
    """Calls per second over the last hour, with running totals for the last minute and
    the rest of the hour: O(1) per call, at most 3,600 buckets."""

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque()  # [second, calls]
        self._minute: deque[list[int]] = deque()  # the buckets of the last minute
        self.minute_total = 0
        self.hour_total = 0

    def add(self, now: float) -> tuple[int, int]:
        """Counts a call; returns (calls in the last minute, calls earlier in the hour)."""
        second = int(now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += 1
        else:
            bucket = [second, 1]
            self._buckets.append(bucket)
            self._minute.append(bucket)
        self.minute_total += 1
        self.hour_total += 1
        while self._minute and second - self._minute[0][0] >= 60:
            self.minute_total -= self._minute.popleft()[1]
        while self._buckets and second - self._buckets[0][0] >= 3600:
            self.hour_total -= self._buckets.popleft()[1]
        return self.minute_total, self.hour_total - self.minute_total


@dataclass(frozen=True)
class Alert:
    tenant: str
    kind: str  # burst | new_country | after_hours
    detail: str
    extension: str
    route_id: str
    trunk_id: str


@dataclass
class Thresholds:
    burst_floor: int = 20  # calls a minute an extension may always make
    burst_factor: float = 5.0  # ... or this many times its usual rate, whichever is more
    new_country_calls: int = 10  # calls within an hour to a country not called before
    quiet: float = 3600.0  # the same alert again only after this long
    learning: float = 3600.0  # countries called this soon after the first call are usual


class FraudDetector:
    """Not thread-safe: admission calls it with its lock held."""

    def __init__(self, on_alert: Callable[[Alert], None],
                 thresholds: Thresholds | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.on_alert = on_alert
        self.thresholds = thresholds or Thresholds()
        self.clock = clock
        self._calls: dict[tuple[str, str], _Window] = {}  # (tenant, extension) -> calls
        self._countries: dict[str, dict[str, deque[float]]] = {}  # tenant -> cc -> times
        self._started: dict[str, float] = {}  # tenant -> its first call seen here
        self._first_seen: dict[str, dict[str, float]] = {}  # tenant -> country -> time
        self._raised: dict[tuple[str, str, str], float] = {}

    def observe(self, tenant: str, extension: str, number: str, route_id: str, trunk_id: str,
                policy: dict[str, Any]) -> list[Alert]:
        now = self.clock()
        alerts = [a for a in (
            self._burst(tenant, extension, now, route_id, trunk_id),
            self._new_country(tenant, extension, number, now, route_id, trunk_id),
            self._after_hours(tenant, extension, now, route_id, trunk_id,
                              policy.get("business_hours"))) if a is not None]
        for alert in alerts:
            self.on_alert(alert)
        return alerts

    def _once(self, key: tuple[str, str, str], now: float) -> bool:
        last = self._raised.get(key)
        if last is not None and now - last < self.thresholds.quiet:
            return False
        self._raised[key] = now
        return True

    def _burst(self, tenant: str, extension: str, now: float, route_id: str,
               trunk_id: str) -> Alert | None:
        window = self._calls.get((tenant, extension))
        if window is None:
            window = self._calls[(tenant, extension)] = _Window()
        last_minute, earlier = window.add(now)
        usual = earlier / 59.0  # calls a minute over the rest of the hour
        limit = max(self.thresholds.burst_floor, self.thresholds.burst_factor * usual)
        if last_minute <= limit or not self._once((tenant, "burst", extension), now):
            return None
        return Alert(tenant, "burst", f"extension {extension or '?'}: {last_minute} calls in "
                     f"the last minute, usually {usual:.1f} a minute", extension, route_id,
                     trunk_id)

    def _new_country(self, tenant: str, extension: str, number: str, now: float,
                     route_id: str, trunk_id: str) -> Alert | None:
        """A country is usual when the tenant called it in its first hour under this agent
        (the learning period) or more than an hour before; a new one alerts when it gets
        `new_country_calls` calls within the hour after it was first called."""
        country = country_of(number)
        if country is None:
            return None
        started = self._started.setdefault(tenant, now)
        first = self._first_seen.setdefault(tenant, {}).setdefault(country, now)
        if first - started < self.thresholds.learning or now - first >= 3600:
            return None
        times = self._countries.setdefault(tenant, {}).setdefault(country, deque())
        if len(times) < self.thresholds.new_country_calls:  # never more than needed
            times.append(now)
        if len(times) < self.thresholds.new_country_calls:
            return None
        if not self._once((tenant, "new_country", country), now):
            return None
        return Alert(tenant, "new_country", f"{len(times)} calls to country code +{country} "
                     "within an hour of its first call", extension, route_id, trunk_id)

    def _after_hours(self, tenant: str, extension: str, now: float, route_id: str,
                     trunk_id: str, hours: dict[str, Any] | None) -> Alert | None:
        if not hours:
            return None
        local = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(hours["timezone"]))
        day = DAYS[local.weekday()]
        clock = local.strftime("%H:%M")
        if day in hours["days"] and hours["start"] <= clock < hours["end"]:
            return None
        if not self._once((tenant, "after_hours", local.strftime("%Y-%m-%d %H")), now):
            return None
        return Alert(tenant, "after_hours", f"a call at {day} {clock} {hours['timezone']}, "
                     f"outside business hours ({','.join(hours['days'])} {hours['start']}-"
                     f"{hours['end']})", extension, route_id, trunk_id)


class AlertRecorder:
    """Takes alerts from admission (which holds its lock) and does the slow part on a
    thread of its own: shows them in the trunk's status and records them in the history."""

    def __init__(self, show: Callable[[Alert], None], record: Callable[[Alert], None]) -> None:
        self.show = show
        self.record = record
        self.recorded = 0
        self.failed = 0
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=10_000)
        self._thread = threading.Thread(target=self._run, name="fraud-alerts", daemon=True)
        self._thread.start()

    def __call__(self, alert: Alert) -> None:
        with contextlib.suppress(queue.Full):  # an alert storm must not stall admission
            self._queue.put_nowait(alert)

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            log.warning("fraud alert, tenant %s: %s: %s", alert.tenant, alert.kind,
                        alert.detail)
            try:
                self.show(alert)
                self.record(alert)
                self.recorded += 1
            except Exception:
                self.failed += 1
                log.exception("could not record the fraud alert in the history")

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
