"""What the notifier watches, turned into conditions: a trunk's registration, each peer
address, a trunk with no healthy address, a trunk near its channel limit (from the agents'
status reports); views and relay lagging, agents gone silent (from the control plane).
Pure functions of a report and the time: the notifier stores what they return."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from infra.notify.conditions import Doc, fresh, observe
from infra.ops.doctor import ADVICE

FAILING = ("auth_failed", "forbidden", "failed", "unreachable")
HEALTHY = ("registered", "ok")
# condition kind -> (tenant's rule, notification when raised, notification when cleared)
KINDS: dict[str, tuple[str, str, str]] = {
    "registration": ("registration_failed", "registration_failed", "registration_recovered"),
    "peer": ("peer_down", "peer_down", "peer_up"),
    "no_healthy": ("no_healthy_address", "no_healthy_address", "healthy_address"),
    "capacity": ("capacity", "capacity_high", "capacity_normal"),
    "lag": ("lag", "lag_high", "lag_normal"),
    "agent": ("agent_silent", "agent_silent", "agent_back"),
}


def key(kind: str, tenant: str, *subject: str) -> str:
    return "\x1f".join((kind, tenant, *subject))


def trunk_report(conditions: dict[str, Doc], report: Doc, trunk: Doc | None,
                 now: datetime) -> Iterator[tuple[str, Doc]]:
    """The conditions one status report of a trunk changes."""
    if trunk is None or not trunk["settings"].get("enabled", True):
        return
    tenant, trunk_id = report["tenant"], report["trunk_id"]
    base = {"tenant": tenant, "trunk_id": trunk_id, "trunk_name": trunk["settings"]["name"]}
    if trunk["settings"].get("type") == "peer":
        yield from _peers(conditions, report, base, now)
    elif report["state"] in FAILING + HEALTHY:
        k = key("registration", tenant, trunk_id)
        failing = report["state"] in FAILING
        detail = {**base, "state": report["state"], "code": report["sip_code"],
                  "reason": report["reason"], "fix": ADVICE.get(report["state"], "")}
        yield k, observe(conditions.get(k) or fresh(now), failing, now, detail,
                         datetime.fromisoformat(report["since"]) if failing else None)
    limit = (trunk["settings"].get("call_limits") or {}).get("max_concurrent_calls")
    if limit:
        calls = report["active_inbound"] + report["active_outbound"]
        k = key("capacity", tenant, trunk_id)
        yield k, {**(conditions.get(k) or fresh(now)), "calls": calls, "limit": limit,
                  "base": base}


def _peers(conditions: dict[str, Doc], report: Doc, base: Doc,
           now: datetime) -> Iterator[tuple[str, Doc]]:
    peers = report.get("peers") or []
    for peer in peers:
        k = key("peer", base["tenant"], base["trunk_id"], peer["address"])
        detail = {**base, "address": peer["address"],
                  "fix": ADVICE["unreachable"] if not peer["up"] else ""}
        yield k, observe(conditions.get(k) or fresh(now), not peer["up"], now, detail)
    if peers:
        k = key("no_healthy", base["tenant"], base["trunk_id"])
        detail = {**base, "addresses": [p["address"] for p in peers],
                  "fix": ADVICE["unreachable"]}
        yield k, observe(conditions.get(k) or fresh(now), not any(p["up"] for p in peers),
                         now, detail)


def capacity(state: Doc, share: float, now: datetime) -> Doc:
    """A trunk at or above `share` of its limit (re-judged on every tick: the share is
    the tenant's and may change)."""
    over = state.get("limit", 0) > 0 and state["calls"] >= share * state["limit"]
    detail = {**state.get("base", {}), "calls": state["calls"], "limit": state["limit"]}
    observed = observe(state, over, now, detail)
    observed["attempts"] = 0  # calls reports are not attempts: only time counts
    return observed


def lag(conditions: dict[str, Doc], tenant: str, rows: list[tuple[str, int]],
        threshold: int, now: datetime) -> Iterator[tuple[str, Doc]]:
    for name, behind in rows:
        k = key("lag", tenant, name)
        yield k, _timed(observe(conditions.get(k) or fresh(now), behind >= threshold, now,
                                {"tenant": tenant, "view": name, "behind": behind}))


def agents(conditions: dict[str, Doc], tenant: str, heartbeats: list[Doc], silent: float,
           now: datetime) -> Iterator[tuple[str, Doc]]:
    for beat in heartbeats:
        seen = datetime.fromisoformat(beat["observed_at"])
        k = key("agent", tenant, beat["agent_id"])
        gone = (now - seen).total_seconds() >= silent
        state = observe(conditions.get(k) or fresh(now), gone, now,
                        {"tenant": tenant, "agent_id": beat["agent_id"],
                         "address": beat["address"], "since": seen.isoformat()}, seen)
        yield k, _timed(state)


def _timed(state: Doc) -> Doc:
    return {**state, "attempts": 0}


def describe(kind: str, event: str, detail: dict[str, Any]) -> tuple[str, str]:
    """Title and one-line summary of a notification."""
    name = detail.get("trunk_name", "")
    code = f" ({detail['code']} {detail['reason']})" if detail.get("code") else (
        f" ({detail['reason']})" if detail.get("reason") else "")
    texts = {
        "registration_failed": f"Trunk {name}: registration failed{code}",
        "registration_recovered": f"Trunk {name}: registered again",
        "peer_down": f"Trunk {name}: peer {detail.get('address')} does not answer OPTIONS",
        "peer_up": f"Trunk {name}: peer {detail.get('address')} answers again",
        "no_healthy_address": f"Trunk {name}: no healthy address",
        "healthy_address": f"Trunk {name}: an address answers again",
        "capacity_high": f"Trunk {name}: {detail.get('calls')} calls of "
                         f"{detail.get('limit')} allowed",
        "capacity_normal": f"Trunk {name}: calls back under the threshold",
        "lag_high": f"View {detail.get('view')} is {detail.get('behind')} events behind",
        "lag_normal": f"View {detail.get('view')} has caught up",
        "agent_silent": f"Agent {detail.get('agent_id')} has gone silent",
        "agent_back": f"Agent {detail.get('agent_id')} is heard again",
    }
    title = texts.get(event, event)
    return title, title + "."
