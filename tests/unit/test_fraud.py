"""The fraud detector's patterns, on a clock the tests move."""

from __future__ import annotations

from datetime import UTC, datetime

from sipagent.fraud import Alert, FraudDetector, Thresholds, country_of

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def detector(clock: Clock, **thresholds: float) -> tuple[FraudDetector, list[Alert]]:
    raised: list[Alert] = []
    return FraudDetector(raised.append, Thresholds(**thresholds), clock), raised  # type: ignore[arg-type]


def test_country_codes() -> None:
    assert [country_of(n) for n in ("+4930123", "004930123", "01144207", "12125551234",
                                    "+8821234", "+7495123", "0301234567", "+1")] == [
        "49", "49", "44", "1", "882", "7", None, "1"]


def test_a_burst_far_above_the_usual_rate_alerts_once() -> None:
    clock = Clock(MONDAY_NOON)
    found, raised = detector(clock, burst_floor=5, burst_factor=3.0)
    for minute in range(30):  # usual: one call a minute
        clock.now = MONDAY_NOON + minute * 60
        found.observe("acme", "100", "2125551234", "r", "t", {})
    assert raised == []
    clock.now = MONDAY_NOON + 31 * 60
    for _ in range(12):
        clock.now += 1
        found.observe("acme", "100", "2125551234", "r", "t", {})
    assert [a.kind for a in raised] == ["burst"]  # once, not once per call
    assert "extension 100: 6 calls in the last minute, usually 0.5 a minute" in raised[0].detail
    found.observe("acme", "200", "2125551234", "r", "t", {})  # another extension: calm
    assert len(raised) == 1


def test_many_calls_to_a_new_country_alert_after_the_learning_period() -> None:
    clock = Clock(MONDAY_NOON)
    found, raised = detector(clock, new_country_calls=3, learning=600)
    found.observe("acme", "100", "+4930123456", "r", "t", {})  # learning: usual
    clock.now += 900
    for _ in range(5):
        found.observe("acme", "100", "+4930123456", "r", "t", {})  # usual country: calm
        found.observe("acme", "100", "+88212345678", "r", "t", {})
    assert [(a.kind, a.detail) for a in raised] == [
        ("new_country", "3 calls to country code +882 within an hour of its first call")]


def test_calls_outside_business_hours_alert_once_an_hour() -> None:
    hours = {"business_hours": {"timezone": "Europe/Berlin", "days": ["mon", "tue"],
                                "start": "09:00", "end": "17:00"}}
    clock = Clock(MONDAY_NOON)  # 13:00 in Berlin: open
    found, raised = detector(clock)
    found.observe("acme", "100", "2125551234", "r", "t", hours)
    assert raised == []
    clock.now = MONDAY_NOON + 8 * 3600  # 21:00 in Berlin
    found.observe("acme", "100", "2125551234", "r", "t", hours)
    found.observe("acme", "101", "2125551234", "r", "t", hours)
    assert [a.kind for a in raised] == ["after_hours"]
    assert raised[0].detail == ("a call at mon 21:00 Europe/Berlin, outside business hours "
                                "(mon,tue 09:00-17:00)")

