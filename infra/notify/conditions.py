"""One watched condition (a trunk failing to register, a peer address down, a view lagging)
and when it notifies: once after it has held for its threshold (or enough failed
attempts), then a reminder at the tenant's interval while it holds, and once more when it
has cleared for the same threshold. The threshold both ways is the hysteresis: a peer that
flaps faster than it never notifies, and one that did notify is not called back up until it
stays up. The state is a plain dict, stored with the decision that changed it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

Doc = dict[str, Any]


@dataclass(frozen=True)
class Rule:
    seconds: float
    attempts: int = 0  # 0: time only
    reminder: float = 3600.0


def fresh(now: datetime) -> Doc:
    return {"active": False, "since": now.isoformat(), "attempts": 0, "fired": False,
            "last_sent": "", "reminders": 0, "detail": {}}


def observe(state: Doc, active: bool, now: datetime, detail: Doc | None = None,
            since: datetime | None = None) -> Doc:
    """The raw condition as last seen; `since` is when it began, if the source knows."""
    state = dict(state)
    if active != state["active"]:
        state.update(active=active, since=(since or now).isoformat(), attempts=0)
    if active:
        state["attempts"] += 1
        state["detail"] = detail or state["detail"]
    return state


def evaluate(state: Doc, rule: Rule, now: datetime) -> tuple[Doc, str | None]:
    """The state after time passed, and what to send: `raised`, `reminder`, `cleared` or
    None."""
    held = (now - datetime.fromisoformat(state["since"])).total_seconds()
    if state["active"] and not state["fired"]:
        if held >= rule.seconds or (rule.attempts and state["attempts"] >= rule.attempts):
            return {**state, "fired": True, "last_sent": now.isoformat(), "reminders": 0}, \
                "raised"
    elif state["active"] and state["fired"]:
        quiet = (now - datetime.fromisoformat(state["last_sent"])).total_seconds()
        if quiet >= rule.reminder:
            return {**state, "last_sent": now.isoformat(),
                    "reminders": state["reminders"] + 1}, "reminder"
    elif state["fired"] and held >= rule.seconds:
        return {**state, "fired": False, "last_sent": now.isoformat()}, "cleared"
    return state, None
