"""Proto messages to settings dicts and back, update masks, and request fingerprints."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from google.protobuf.message import Message

from domain.calls import CallRecord
from domain.certificates import facts as certificate_facts
from domain.errors import ValidationError
from domain.model import CommandMeta, etag_for
from domain.trunk import LIMIT_FIELDS, TIMER_DEFAULTS, TRUNK_FIELDS
from domain.trunk_settings import default_settings
from infra.grpc_api.context import current
from projections.audit import ChangeRow
from projections.state import Doc
from trunkplane.v1 import common_pb2, route_pb2, trunk_pb2

OUTPUT_ONLY = frozenset({"id", "tenant", "password_set", "version", "etag", "create_time",
                         "update_time", "trunk_name", "client_key_set",
                         "client_certificate_subject", "client_certificate_expires"})
NESTED = frozenset({"nat", "call_limits", "guard", "timers"})


def command_meta(request: Message, options: common_pb2.CommandOptions) -> CommandMeta:
    call = current()
    return CommandMeta(
        actor=call.actor,
        reason=options.reason,
        request_id=options.request_id or call.request_id,
        idempotency_key=options.request_id,
        fingerprint=_fingerprint(request) if options.request_id else "",
        may_move_credentials=call.role == "admin",
    )


def _fingerprint(request: Message) -> str:
    copy = type(request)()
    copy.CopyFrom(request)
    if copy.HasField("options"):
        copy.options.ClearField("request_id")  # type: ignore[attr-defined]
    data = copy.SerializeToString(deterministic=True)
    return f"{type(request).__name__}:{hashlib.sha256(data).hexdigest()}"


# Trunk fields that have the same name, type and meaning in the proto and in the settings
# (the others: nat, call_limits and timers are messages, enabled is optional, the secrets
# are only ever written).
_SAME = tuple(f.name for f in TRUNK_FIELDS
              if f.name not in ("nat", "call_limits", "timers", "enabled") and not f.secret)
_TIMER_NUMBERS = tuple(k for k, v in TIMER_DEFAULTS.items() if v is None)


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | bool) else list(value)


def trunk_settings(msg: trunk_pb2.Trunk) -> dict[str, Any]:
    limits = msg.call_limits
    return {
        **{name: _plain(getattr(msg, name)) for name in _SAME},
        "password": msg.password,
        "nat": {"enabled": msg.nat.enabled, "external_ip": msg.nat.external_ip,
                "local_networks": list(msg.nat.local_networks),
                "stun_server": msg.nat.stun_server},
        "call_limits": {k: getattr(limits, k) if limits.HasField(k) else None
                        for k in LIMIT_FIELDS},
        "enabled": msg.enabled if msg.HasField("enabled") else True,
        "timers": timer_settings(msg.timers),
        "client_key": msg.client_key,
    }


def timer_settings(msg: trunk_pb2.TrunkTimers) -> dict[str, Any]:
    return {**{k: getattr(msg, k) if msg.HasField(k) else None for k in _TIMER_NUMBERS},
            "qualify": msg.qualify if msg.HasField("qualify") else True,
            "ok_codes": list(msg.ok_codes)}


def timers_message(timers: dict[str, Any] | None) -> trunk_pb2.TrunkTimers:
    t = {**TIMER_DEFAULTS, **(timers or {})}
    return trunk_pb2.TrunkTimers(**{k: t[k] for k in _TIMER_NUMBERS if t[k] is not None},
                                 qualify=t["qualify"], ok_codes=list(t["ok_codes"]))


def outbound_settings(msg: route_pb2.OutboundRoute) -> dict[str, Any]:
    return {
        "name": msg.name,
        "dial_patterns": [{"match": p.match, "prefix": p.prefix, "prepend": p.prepend}
                          for p in msg.dial_patterns],
        "trunks": [{"trunk_id": t.trunk_id, "weight": t.weight or 1} for t in msg.trunks],
        "strategy": msg.strategy,
        "allowed_extensions": list(msg.allowed_extensions),
        "enabled": msg.enabled if msg.HasField("enabled") else True,
        "description": msg.description,
        "guard": guard_settings(msg.guard),
    }


def guard_settings(msg: route_pb2.CallGuard) -> dict[str, Any]:
    return {
        "max_calls_per_minute": msg.max_calls_per_minute or None,
        "allow_prefixes": list(msg.allow_prefixes),
        "block_prefixes": list(msg.block_prefixes),
        "daily_cap": msg.daily_cap or None,
    }


def hours_settings(msg: route_pb2.TenantPolicy) -> dict[str, Any] | None:
    if not msg.HasField("business_hours"):
        return None
    h = msg.business_hours
    if not (h.timezone or h.days or h.start or h.end):
        return None  # an empty message clears them
    return {"timezone": h.timezone or "UTC", "days": list(h.days), "start": h.start,
            "end": h.end}


def policy_message(tenant: str, policy: dict[str, Any]) -> route_pb2.TenantPolicy:
    msg = route_pb2.TenantPolicy(tenant=tenant, guard=guard_message(policy.get("guard")))
    hours = policy.get("business_hours")
    if hours:
        msg.business_hours.CopyFrom(route_pb2.BusinessHours(**hours))
    return msg


def guard_message(guard: dict[str, Any] | None) -> route_pb2.CallGuard:
    g = guard or {}
    msg = route_pb2.CallGuard(allow_prefixes=g.get("allow_prefixes") or [],
                              block_prefixes=g.get("block_prefixes") or [])
    if g.get("max_calls_per_minute"):
        msg.max_calls_per_minute = g["max_calls_per_minute"]
    if g.get("daily_cap"):
        msg.daily_cap = g["daily_cap"]
    return msg


def inbound_settings(msg: route_pb2.InboundRoute) -> dict[str, Any]:
    return {
        "did_pattern": msg.did_pattern, "caller_id_pattern": msg.caller_id_pattern,
        "trunk_id": msg.trunk_id, "destination": msg.destination,
        "enabled": msg.enabled if msg.HasField("enabled") else True,
        "description": msg.description,
    }


def masked_patch(msg: Message, full: dict[str, Any], paths: list[str],
                 extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The fields an update names, with their new values. Without a mask: the fields set."""
    patch: dict[str, Any] = {}
    for path in paths or _present_paths(msg):
        head, _, tail = path.partition(".")
        if head in OUTPUT_ONLY:
            raise ValidationError.single("update_mask", f"'{path}' is output only")
        if head in extra:
            continue
        known = head in full and (not tail or (isinstance(full[head], dict) and tail in full[head]))
        if not known:
            raise ValidationError.single("update_mask", f"unknown field '{path}'")
        if tail:
            patch.setdefault(head, {})[tail] = full[head][tail]
        else:
            patch[head] = full[head]
    if not patch and not any(p.partition(".")[0] in extra for p in paths or _present_paths(msg)):
        raise ValidationError.single("update_mask", "names no field to change")
    return patch


def _present_paths(msg: Message) -> list[str]:
    paths = []
    for descriptor, value in msg.ListFields():
        if descriptor.name in NESTED:
            paths += [f"{descriptor.name}.{d.name}" for d, _ in value.ListFields()]
        else:
            paths.append(descriptor.name)
    return paths


def _stamp(msg: Any, doc: Doc) -> None:
    msg.id = doc["id"]
    msg.tenant = doc["tenant"]
    msg.version = doc["version"]
    msg.etag = etag_for(doc["version"])
    msg.create_time.FromDatetime(datetime.fromisoformat(doc["create_time"]))
    msg.update_time.FromDatetime(datetime.fromisoformat(doc["update_time"]))


def trunk_message(doc: Doc) -> trunk_pb2.Trunk:
    """A trunk for a reader: the password and the client key are never in it, only
    whether one is set (a trunk stored before a field existed has its default)."""
    s = {**default_settings(), **doc["settings"]}
    msg = trunk_pb2.Trunk(
        **{name: s[name] for name in _SAME},
        nat=trunk_pb2.NatSettings(**s["nat"]),
        call_limits=trunk_pb2.CallLimits(
            **{k: v for k, v in s["call_limits"].items() if v is not None}),
        enabled=s["enabled"], password_set=bool(s["password"]),
        timers=timers_message(s["timers"]), client_key_set=bool(s["client_key"]),
    )
    if s["client_certificate"]:
        facts = certificate_facts(s["client_certificate"])
        msg.client_certificate_subject = facts.subject
        if facts.not_after is not None:
            msg.client_certificate_expires.FromDatetime(facts.not_after)
    _stamp(msg, doc)
    return msg


def outbound_message(doc: Doc, position: int, names: dict[str, str]) -> route_pb2.OutboundRoute:
    s = doc["settings"]
    msg = route_pb2.OutboundRoute(
        name=s["name"], position=position,
        dial_patterns=[route_pb2.DialPattern(**p) for p in s["dial_patterns"]],
        trunks=[route_pb2.RouteTrunk(trunk_id=t["trunk_id"], weight=t["weight"],
                                     trunk_name=names.get(t["trunk_id"], ""))
                for t in s["trunks"]],
        strategy=s["strategy"], allowed_extensions=s["allowed_extensions"],
        enabled=s["enabled"], description=s["description"], guard=guard_message(s.get("guard")),
    )
    _stamp(msg, doc)
    return msg


def inbound_message(doc: Doc) -> route_pb2.InboundRoute:
    msg = route_pb2.InboundRoute(**doc["settings"])
    _stamp(msg, doc)
    return msg


def history_message(row: ChangeRow) -> common_pb2.HistoryEntry:
    msg = common_pb2.HistoryEntry(
        version=row.version, actor=row.actor, reason=row.reason,
        request_id=row.request_id, event_type=row.event_type,
        changes=[common_pb2.FieldChange(field=c.field, old_value=c.old_value,
                                        new_value=c.new_value) for c in row.changes],
    )
    msg.time.FromDatetime(row.time)
    return msg


def stale(observed: Doc, agents: dict[str, Doc]) -> bool:
    """Whether the observation has no agent standing behind it any more: its agent is gone
    from the directory, not `alive` there (silent by the view's one rule,
    domain.status.silent_after, or left), or started again since; or an agent that
    started after it holds the tenant now (a restart without SIP, say, observes nothing:
    the last run's `ok` would otherwise show for ever). `agents` is the status view's
    directory (StatusView.agents), each with its `condition`."""
    made = datetime.fromisoformat(observed["observed_at"])

    def alive(agent: Doc) -> bool:
        return bool(agent["condition"] == "alive")

    own = agents.get(observed["agent_id"])
    if own is None or not alive(own) or datetime.fromisoformat(own["started_at"]) > made:
        return True
    return any(alive(a) and observed["tenant"] in a["tenants"] and a is not own
               and datetime.fromisoformat(a["started_at"]) > made for a in agents.values())


def status_message(config: Doc, observed: Doc | None,
                   agents: dict[str, Doc] | None = None) -> trunk_pb2.TrunkStatus:
    """A trunk's status: its configuration's name, kind and limits, and what an agent last
    observed of it (nothing yet: `unknown`, or `disabled` for a disabled trunk); with the
    agent directory (agent id -> newest heartbeat), whether that observation is stale."""
    s = config["settings"]
    msg = trunk_pb2.TrunkStatus(
        trunk_id=config["id"], trunk_name=s["name"], type=s["type"], enabled=s["enabled"],
        state="unknown" if s["enabled"] else "disabled",
        registrations_wanted=0 if s["type"] == "peer" else s["max_registrations"],
        call_limits=trunk_pb2.CallLimits(
            **{k: v for k, v in s["call_limits"].items() if v is not None}))
    if observed is None:
        return msg
    msg.state = observed["state"]
    msg.sip_code = observed["sip_code"]
    msg.reason = observed["reason"]
    msg.registrations_up = observed["registrations_up"]
    msg.active_inbound = observed["active_inbound"]
    msg.active_outbound = observed["active_outbound"]
    msg.agent_id = observed["agent_id"]
    msg.alerts.extend(observed.get("alerts") or [])
    msg.target = observed.get("target") or ""
    msg.since.FromDatetime(datetime.fromisoformat(observed["since"]))
    msg.observed_at.FromDatetime(datetime.fromisoformat(observed["observed_at"]))
    msg.stale = agents is not None and stale(observed, agents)
    for contact in observed["contacts"]:
        entry = msg.contacts.add(uri=contact["uri"])
        if contact["expires_at"]:
            entry.expires_at.FromDatetime(datetime.fromisoformat(contact["expires_at"]))
    for peer in observed["peers"]:
        health = msg.peers.add(address=peer["address"], up=peer["up"],
                               rtt_ms=peer["rtt_ms"] or 0.0)
        health.since.FromDatetime(datetime.fromisoformat(peer["since"]))
    return msg


def pbx_settings(msg: route_pb2.PbxAccess) -> dict[str, Any]:
    return {
        "source_cidrs": list(msg.source_cidrs), "username": msg.username,
        "password": msg.password,
        "targets": [{"uri": t.uri, "priority": t.priority if t.HasField("priority") else 10,
                     "weight": t.weight or 1} for t in msg.targets],
        "enabled": msg.enabled if msg.HasField("enabled") else True,
    }


def pbx_message(tenant: str, doc: Doc | None) -> route_pb2.PbxAccess:
    """The tenant's PBX for a reader (unset: version 0, the defaults); the password is
    never in it, only whether one is set."""
    if doc is None:
        return route_pb2.PbxAccess(tenant=tenant, enabled=True, etag=etag_for(0))
    s = doc["settings"]
    msg = route_pb2.PbxAccess(
        tenant=tenant, source_cidrs=s["source_cidrs"], username=s["username"],
        password_set=bool(s["password"]), enabled=s["enabled"],
        targets=[route_pb2.PbxTarget(**t) for t in s["targets"]],
        version=doc["version"], etag=etag_for(doc["version"]))
    msg.update_time.FromDatetime(datetime.fromisoformat(doc["update_time"]))
    return msg


def call_message(record: CallRecord) -> trunk_pb2.CallRecord:
    r = record
    msg = trunk_pb2.CallRecord(
        call_id=r.call_id, tenant=r.tenant, direction=r.direction, agent_id=r.agent_id,
        attempts=[trunk_pb2.CallAttempt(trunk_id=a.trunk_id, trunk_name=a.trunk_name,
                                        code=a.code, reason=a.reason) for a in r.attempts],
        number_received=r.number_received, number_sent=r.number_sent,
        caller_received=r.caller_received, caller_sent=r.caller_sent, trunk_id=r.trunk_id,
        final_code=r.final_code, final_reason=r.final_reason, hangup_by=r.hangup_by)
    msg.started_at.FromDatetime(r.started_at)
    msg.ended_at.FromDatetime(r.ended_at)
    if r.answered_at is not None:
        msg.answered_at.FromDatetime(r.answered_at)
    return msg
