"""The toll-fraud guard's settings, per outbound route and per tenant: how many new calls
a minute, which destinations by prefix (allow-list, block-list), and how many outbound
calls a day. Validated here; enforced by the agent's admission."""

from __future__ import annotations

from typing import Any

from domain.errors import Violations

MAX_RATE = 100_000
MAX_PREFIXES = 500


def default_guard() -> dict[str, Any]:
    return {"max_calls_per_minute": None, "allow_prefixes": [], "block_prefixes": [],
            "daily_cap": None}


def validate_guard(raw: Any, errors: Violations, field: str = "guard") -> dict[str, Any]:
    """The canonical guard dict; each mistake is added to `errors` under `field.<name>`."""
    if raw is None:
        return default_guard()
    if not isinstance(raw, dict):
        errors.add(field, "must be an object")
        return default_guard()
    out = default_guard()
    unknown = sorted(set(raw) - set(out))
    if unknown:
        errors.add(field, f"unknown fields {', '.join(unknown)}")
    for name in ("max_calls_per_minute", "daily_cap"):
        value = raw.get(name)
        if value in (None, 0):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RATE:
            errors.add(f"{field}.{name}", f"must be a whole number from 1 to {MAX_RATE} "
                       "(or unset for no limit)")
            continue
        out[name] = value
    for name in ("allow_prefixes", "block_prefixes"):
        prefixes = raw.get(name) or []
        if not isinstance(prefixes, list) or len(prefixes) > MAX_PREFIXES:
            errors.add(f"{field}.{name}", f"must be a list of at most {MAX_PREFIXES} prefixes")
            continue
        seen: list[str] = []
        for i, prefix in enumerate(prefixes):
            text = str(prefix).strip()
            digits = text.removeprefix("+")
            if not digits or not digits.isdigit() or len(text) > 16 or not text.isascii():
                errors.add(f"{field}.{name}[{i}]", f"'{text[:40]}' is not a number prefix "
                           "(digits, optionally after '+', up to 16 characters)")
            elif text not in seen:
                seen.append(text)
        out[name] = seen
    both = sorted(set(out["allow_prefixes"]) & set(out["block_prefixes"]))
    if both:
        errors.add(f"{field}.block_prefixes", f"{', '.join(both)} cannot be allowed and "
                   "blocked at once")
    return out


def prefix_of(number: str, prefixes: list[str]) -> str | None:
    """The longest prefix the number starts with ('+' and '00' international forms are the
    same country code), or None."""
    forms = {number, number.removeprefix("+")}
    if number.startswith("00"):
        forms.add(number[2:])
    best: str | None = None
    for prefix in prefixes:
        bare = prefix.removeprefix("+")
        if any(form.startswith(bare) for form in forms) and (best is None or len(bare) > len(
                best.removeprefix("+"))):
            best = prefix
    return best


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALERT_KINDS = ("burst", "new_country", "after_hours")


def validate_hours(raw: Any, errors: Violations, field: str = "business_hours"
                   ) -> dict[str, Any] | None:
    """{"timezone": IANA name, "days": ["mon", ...], "start": "HH:MM", "end": "HH:MM"}, or
    None (no business hours: no after-hours alerts)."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        errors.add(field, "must be an object")
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    out: dict[str, Any] = {"timezone": str(raw.get("timezone") or "UTC"),
                           "days": [], "start": "", "end": ""}
    try:
        ZoneInfo(out["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        errors.add(f"{field}.timezone", f"'{out['timezone'][:60]}' is not an IANA time zone "
                   "(e.g. Europe/Berlin)")
    days = [str(d).strip().lower()[:3] for d in raw.get("days") or DAYS[:5]]
    bad = [d for d in days if d not in DAYS]
    if bad:
        errors.add(f"{field}.days", f"{', '.join(bad)}: days are mon, tue, wed, thu, fri, "
                   "sat, sun")
    out["days"] = [d for d in DAYS if d in days]
    for name in ("start", "end"):
        text = str(raw.get(name) or "")
        hours, _, minutes = text.partition(":")
        if not (text.isascii() and hours.isdigit() and minutes.isdigit() and int(hours) < 24 and
                int(minutes) < 60 and len(minutes) == 2):
            errors.add(f"{field}.{name}", f"'{text[:10]}' is not a time HH:MM")
        else:
            out[name] = f"{int(hours):02d}:{minutes}"
    if out["start"] and out["end"] and out["start"] >= out["end"]:
        errors.add(f"{field}.end", "must be after start")
    return out
