"""The views' time text: the same as `isoformat(timespec="microseconds")`, whatever the
minute the fast path remembered last."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from projections.state import iso


def test_iso_is_isoformat_with_microseconds() -> None:
    moments = [datetime(1, 1, 1, tzinfo=UTC),
               datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
               datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1),
               datetime(2026, 1, 1, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))]
    base = datetime(2026, 11, 30, 3, 42, 59, 675653, tzinfo=UTC)
    draw = random.Random(16)
    moments += [base + timedelta(microseconds=draw.randrange(-10**11, 10**11))
                for _ in range(5000)]
    moments += [base + timedelta(microseconds=n) for n in range(0, 120_000_000, 999_983)]
    for moment in moments:
        assert iso(moment) == moment.isoformat(timespec="microseconds")
