"""Alert rules and channels validate themselves; a condition notifies once after its
threshold, reminds, clears after the same threshold (hysteresis); capacity peaks from call
intervals; webhook signatures are the Stripe form."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from domain.alerting import validate_channel, validate_rules
from domain.errors import ValidationError
from infra.notify.capacity import advice, peaks_from_calls
from infra.notify.conditions import Rule, evaluate, fresh, observe
from infra.notify.deliver import render_text, signature

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_condition_notifies_once_reminds_and_clears_after_holding() -> None:
    rule = Rule(seconds=10, attempts=3, reminder=60)
    state = observe(fresh(T0), True, at(0))
    state, what = evaluate(state, rule, at(5))
    assert what is None
    state = observe(observe(state, True, at(6)), True, at(7))  # the third failed attempt
    state, what = evaluate(state, rule, at(7))
    assert what == "raised"
    state, what = evaluate(state, rule, at(30))
    assert what is None
    state, what = evaluate(state, rule, at(68))
    assert (what, state["reminders"]) == ("reminder", 1)
    state = observe(state, False, at(70))
    state, what = evaluate(state, rule, at(75))
    assert what is None  # not cleared until it has held for the threshold
    state = observe(observe(state, True, at(76)), False, at(77))  # a flap: still raised
    assert evaluate(state, rule, at(80))[1] is None
    assert evaluate(state, rule, at(87))[1] == "cleared"


def test_flapping_faster_than_the_threshold_never_notifies() -> None:
    rule = Rule(seconds=2)
    state = fresh(T0)
    for step in range(40):
        state = observe(state, step % 2 == 0, at(step * 0.5))
        state, what = evaluate(state, rule, at(step * 0.5))
        assert what is None


def test_capacity_peaks_per_trunk_and_day_and_the_advice() -> None:
    calls = [("t1", at(0), at(100)), ("t1", at(50), at(150)), ("t1", at(100), at(200)),
             ("t2", at(0), at(10)), ("t1", at(86400), at(86500))]
    peaks = peaks_from_calls(calls)
    day = T0.date().isoformat()
    assert peaks[("t1", day)] == 2  # a call ending as another starts frees its channel first
    assert peaks[("t2", day)] == 1
    assert peaks[("t1", (T0 + timedelta(days=1)).date().isoformat())] == 1
    assert (advice(7), advice(10), advice(0)) == (9, 12, 0)


def test_channels_validate_every_field_and_keep_the_other_kind_empty() -> None:
    with pytest.raises(ValidationError) as refused:
        validate_channel({"name": "-x", "kind": "email", "smtp_server": "mail.example.com",
                          "username": "", "password": "", "sender": "nobody",
                          "recipients": []})
    fields = {v.field for v in refused.value.violations}
    assert fields == {"channel.name", "channel.smtp_server", "channel.username",
                      "channel.password", "channel.sender", "channel.recipients"}
    hook = validate_channel({"name": "ops", "kind": "webhook", "url": "https://h.example/x",
                             "secret": "s" * 16, "password": "left-over"})
    assert (hook["password"], hook["smtp_server"]) == ("", "")


def test_rules_refuse_unknown_alerts_settings_and_out_of_range_values() -> None:
    with pytest.raises(ValidationError) as refused:
        validate_rules({"capacity": {"share": 0}, "fraud": {"seconds": 5}, "x": {}}, 0)
    assert {v.field for v in refused.value.violations} == {
        "rules.capacity.share", "rules.fraud.seconds", "rules.x", "reminder_seconds"}


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id": "n1"}'
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("k" * 16, 1700000000, body) == f"t=1700000000,v1={expected}"


def test_the_email_body_names_the_trunk_code_reason_since_and_fix() -> None:
    text = render_text({"id": "n1", "type": "registration_failed", "created_at": "now",
                        "summary": "Trunk voco: registration failed (403 Forbidden).",
                        "trunk_name": "voco", "provider": "403 Forbidden",
                        "since": "2026-11-29T12:00:00+00:00", "fix": "check the account"})
    for part in ("Trunk: voco", "Provider's answer: 403 Forbidden",
                 "Since: 2026-11-29T12:00:00+00:00", "Fix: check the account"):
        assert part in text
