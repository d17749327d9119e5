"""The Avro schemas of what trunkplane publishes: domain events, status observations,
agent heartbeats, call records, and the agents' snapshots of aggregates (the state topic).

Each published event class has one record schema, generated from the class's fields and
named by the table of published names below (not by the module the class lives in). Every
version ever released is a file `protos/trunkplane/avro/<record name>/v<N>.avsc`, shipped
with the package; `python -m infra.messaging.release` writes a new version when the code's
schema differs from the newest file, and the tests fail until it has (and when a new version
cannot read and be read by every old one)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

import trunkplane
from domain.catalog import TenantCatalog
from domain.feeds import published_events
from domain.model import Configured, own_fields
from domain.pbx import Pbx
from domain.routes import InboundRoute, OutboundRoute
from domain.trunk import TRUNK_FIELDS, Trunk

SCHEMA_DIR = Path(trunkplane.__file__).resolve().parent / "avro"
NS = "trunkplane.avro"

# Published record names, one per aggregate; an event's record is `<aggregate name>.<event
# class name>`. They were the Python module paths when first released and must stay as they
# are: every payload's fingerprint covers them, so renaming one would orphan every record
# written under it. Moving or renaming a module changes nothing here; a new aggregate gets
# a new entry, named for what it is.
AGGREGATE_RECORDS: dict[type, str] = {
    Trunk: "domain.trunk.Trunk",
    OutboundRoute: "domain.routes.OutboundRoute",
    InboundRoute: "domain.routes.InboundRoute",
    TenantCatalog: "domain.catalog.TenantCatalog",
    Pbx: "domain.pbx.Pbx",
}
STATUS_RECORD = "domain.status.StatusObservation"  # published name, kept as released
HEARTBEAT_RECORD = "domain.status.AgentHeartbeat"  # published name, kept as released
CALL_RECORD = "domain.calls.CallRecord"  # published name: keep it when the class moves
HEAD_RECORD = "infra.ledger.SignedHead"  # published name: keep it when the class moves
STATE_RECORD = "domain.feeds.AggregateState"  # published name: keep it when the class moves
POSITION_RECORD = "domain.feeds.StatePosition"  # published name: keep it when the class moves
_AGGREGATES = {aggregate.__name__: aggregate for aggregate in AGGREGATE_RECORDS}

_STRINGS = {"type": "array", "items": "string"}
SEALED = {
    "type": "record", "name": "SealedSecret", "namespace": NS,
    "doc": "AES-GCM under the wire key `key_id`; associated data: aggregate id and field.",
    "fields": [{"name": "key_id", "type": "string"},
               {"name": "nonce", "type": "bytes"},
               {"name": "ciphertext", "type": "bytes"}],
}
NAT = {
    "type": "record", "name": "NatSettings", "namespace": NS,
    "fields": [{"name": "enabled", "type": "boolean"},
               {"name": "external_ip", "type": "string"},
               {"name": "local_networks", "type": _STRINGS},
               {"name": "stun_server", "type": "string"}],
}
LIMITS = {
    "type": "record", "name": "CallLimits", "namespace": NS,
    "fields": [{"name": n, "type": ["null", "int"], "default": None}
               for n in ("max_concurrent_calls", "max_inbound_calls", "max_outbound_calls")],
}
TIMERS = {
    "type": "record", "name": "TrunkTimers", "namespace": NS,
    "doc": "A trunk's own timers; null: the agent's process-wide value.",
    "fields": [*({"name": n, "type": ["null", "int"], "default": None}
                 for n in ("registration_expiry", "backoff_base", "backoff_cap",
                           "options_interval", "down_after", "up_after")),
               {"name": "qualify", "type": "boolean", "default": True},
               {"name": "ok_codes", "type": _STRINGS, "default": []},
               {"name": "failover_after", "type": ["null", "int"], "default": None}],
}
DEFAULT_TIMERS: dict[str, Any] = {
    "registration_expiry": None, "backoff_base": None, "backoff_cap": None,
    "options_interval": None, "down_after": None, "up_after": None, "qualify": True,
    "ok_codes": [], "failover_after": None}
DIAL_PATTERN = {
    "type": "record", "name": "DialPattern", "namespace": NS,
    "fields": [{"name": n, "type": "string"} for n in ("match", "prefix", "prepend")],
}
ROUTE_TRUNK = {
    "type": "record", "name": "RouteTrunk", "namespace": NS,
    "fields": [{"name": "trunk_id", "type": "string"}, {"name": "weight", "type": "int"}],
}

GUARD = {
    "type": "record", "name": "CallGuard", "namespace": NS,
    "fields": [{"name": "max_calls_per_minute", "type": ["null", "int"], "default": None},
               {"name": "allow_prefixes", "type": _STRINGS, "default": []},
               {"name": "block_prefixes", "type": _STRINGS, "default": []},
               {"name": "daily_cap", "type": ["null", "int"], "default": None}],
}
NO_GUARD: dict[str, Any] = {"max_calls_per_minute": None, "allow_prefixes": [],
                            "block_prefixes": [], "daily_cap": None}
HOURS = {
    "type": "record", "name": "BusinessHours", "namespace": NS,
    "fields": [{"name": "timezone", "type": "string"},
               {"name": "days", "type": _STRINGS},
               {"name": "start", "type": "string"},
               {"name": "end", "type": "string"}],
}
PBX_TARGET = {
    "type": "record", "name": "PbxTarget", "namespace": NS,
    "fields": [{"name": "uri", "type": "string"}, {"name": "priority", "type": "int"},
               {"name": "weight", "type": "int"}],
}
POLICY = {
    "type": "record", "name": "TenantPolicy", "namespace": NS,
    "fields": [{"name": "guard", "type": GUARD, "default": NO_GUARD},
               {"name": "business_hours", "type": ["null", HOURS], "default": None}],
}

# The Avro type of every settings field, by name (names are the same in every aggregate).
FIELD_TYPES: dict[str, Any] = {
    "name": "string", "type": "string", "host": "string", "transport": "string",
    "username": "string", "password": ["null", SEALED], "auth_id": "string",
    "max_registrations": "int", "from_user": "string", "from_domain": "string",
    "peer_addresses": _STRINGS, "codecs": _STRINGS, "dtmf_mode": "string", "nat": NAT,
    "call_limits": LIMITS, "enabled": "boolean", "description": "string",
    "outbound_proxy": "string",
    "strategy": "string", "dial_patterns": {"type": "array", "items": DIAL_PATTERN},
    "trunks": {"type": "array", "items": ROUTE_TRUNK}, "allowed_extensions": _STRINGS,
    "did_pattern": "string", "caller_id_pattern": "string", "trunk_id": "string",
    "destination": "string", "order": _STRINGS, "tenant": "string", "guard": GUARD,
    "policy": POLICY, "source_cidrs": _STRINGS,
    "targets": {"type": "array", "items": PBX_TARGET},
    "timers": TIMERS, "client_certificate": "string", "client_key": ["null", SEALED],
}
# Fields added after a record's first release need a default, so old payloads still read.
FIELD_DEFAULTS: dict[str, Any] = {"guard": NO_GUARD, "outbound_proxy": "",
                                  "timers": DEFAULT_TIMERS, "client_certificate": "",
                                  "client_key": None}
SETTINGS_FIELDS: dict[type, tuple[str, ...]] = {
    Trunk: tuple(f.name for f in TRUNK_FIELDS),  # the order the first release had
    OutboundRoute: ("name", "strategy", "enabled", "description", "dial_patterns", "trunks",
                    "allowed_extensions", "guard"),
    InboundRoute: ("did_pattern", "caller_id_pattern", "trunk_id", "destination", "enabled",
                   "description"),
    Pbx: ("source_cidrs", "username", "password", "targets", "enabled"),
}



def aggregate_of(cls: type) -> type:
    """The aggregate an event class belongs to (events are nested: `Trunk.Created`)."""
    return _AGGREGATES[cls.__qualname__.partition(".")[0]]


def record_name(cls: type) -> str:
    """The published name of an event class's record."""
    return f"{AGGREGATE_RECORDS[aggregate_of(cls)]}.{cls.__name__}"


def event_schema(cls: type) -> dict[str, Any]:
    namespace, _, name = record_name(cls).rpartition(".")
    fields: list[dict[str, Any]] = [
        {"name": "position", "type": "long",
         "doc": "the event's position in the control plane's notification log"},
        {"name": "tenant", "type": "string"},
        {"name": "originator_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "originator_version", "type": "long"},
        {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "actor", "type": "string"},
        {"name": "reason", "type": "string"},
        {"name": "request_id", "type": "string"},
    ]
    aggregate = aggregate_of(cls)
    if issubclass(cls, Configured.Created):
        fields.append({"name": "settings", "type": settings_record(aggregate)})
    else:
        fields += [_field(f) for f in own_fields(cls) if f != "tenant"]
    schema: dict[str, Any] = _named_once(
        {"type": "record", "name": name, "namespace": namespace, "fields": fields}, set())
    return schema


def _named_once(schema: Any, seen: set[str]) -> Any:
    """Avro defines a named type once per schema; a later use names it (two secrets in
    one record share SealedSecret)."""
    if isinstance(schema, list):
        return [_named_once(s, seen) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") == "record" and "namespace" in schema:
        full = f"{schema['namespace']}.{schema['name']}"
        if full in seen:
            return full
        seen.add(full)
    out = dict(schema)
    if "fields" in out:
        out["fields"] = [{**f, "type": _named_once(f["type"], seen)} for f in out["fields"]]
    for key in ("items", "values"):
        if key in out:
            out[key] = _named_once(out[key], seen)
    if isinstance(out.get("type"), dict | list):
        out["type"] = _named_once(out["type"], seen)
    return out


def settings_record(aggregate: type) -> dict[str, Any]:
    """The settings of a trunk, route or PBX: its Created event's, and its snapshot's."""
    return {"type": "record", "name": f"{aggregate.__name__}Settings", "namespace": NS,
            "fields": [_field(f) for f in SETTINGS_FIELDS[aggregate]]}


# A snapshot's settings field per kind (domain.model.Subject's values).
STATE_SETTINGS: dict[str, type] = {"trunk": Trunk, "outbound": OutboundRoute,
                                   "inbound": InboundRoute, "pbx": Pbx}


def state_schema() -> dict[str, Any]:
    """One aggregate as the agents fold it (domain.feeds.AggregateState), keyed by its id
    on the compacted state topic: the settings of its kind (null: deleted), or for a
    tenant's catalog its route order and policy with the versions that set them."""
    fields: list[dict[str, Any]] = [
        {"name": "tenant", "type": "string"},
        {"name": "aggregate_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "kind", "type": "string",
         "doc": "trunk, outbound, inbound, pbx, or catalog"},
        {"name": "version", "type": "long", "doc": "the newest version applied"},
    ]
    fields += [{"name": kind, "type": ["null", settings_record(aggregate)], "default": None}
               for kind, aggregate in STATE_SETTINGS.items()]
    fields += [
        {"name": "order", "type": _STRINGS, "default": []},
        {"name": "order_version", "type": "long", "default": 0},
        {"name": "policy", "type": ["null", POLICY], "default": None},
        {"name": "policy_version", "type": "long", "default": 0},
    ]
    schema: dict[str, Any] = _defined_once({
        "type": "record", "name": STATE_RECORD.rpartition(".")[2],
        "namespace": STATE_RECORD.rpartition(".")[0], "fields": fields})
    return schema


def position_schema() -> dict[str, Any]:
    """A partition's position on the state topic (domain.feeds.StatePosition)."""
    return {
        "type": "record", "name": POSITION_RECORD.rpartition(".")[2],
        "namespace": POSITION_RECORD.rpartition(".")[0],
        "fields": [{"name": "partition", "type": "int"},
                   {"name": "offset", "type": "long",
                    "doc": "every event of the partition before this offset is reflected in "
                           "the state records before this one"}],
    }


def _defined_once(schema: Any, seen: set[str] | None = None) -> Any:
    """Avro defines a named type once per schema: later uses become its full name."""
    seen = set() if seen is None else seen
    if isinstance(schema, list):
        return [_defined_once(s, seen) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") == "record":
        full = f"{schema.get('namespace', '')}.{schema['name']}"
        if full in seen:
            return full
        seen.add(full)
        return {**schema, "fields": [{**f, "type": _defined_once(f["type"], seen)}
                                     for f in schema["fields"]]}
    if schema.get("type") == "array":
        return {**schema, "items": _defined_once(schema["items"], seen)}
    return schema


def _field(name: str) -> dict[str, Any]:
    field: dict[str, Any] = {"name": name, "type": FIELD_TYPES[name]}
    if name in FIELD_DEFAULTS:
        field["default"] = FIELD_DEFAULTS[name]
    return field


def status_schema() -> dict[str, Any]:
    stamp = {"type": "long", "logicalType": "timestamp-micros"}
    return {
        "type": "record", "name": STATUS_RECORD.rpartition(".")[2],
        "namespace": STATUS_RECORD.rpartition(".")[0],
        "fields": [
            {"name": "tenant", "type": "string"},
            {"name": "trunk_id", "type": "string"},
            {"name": "agent_id", "type": "string"},
            {"name": "sequence", "type": "long"},
            {"name": "observed_at", "type": stamp},
            {"name": "state", "type": "string"},
            {"name": "since", "type": stamp},
            {"name": "sip_code", "type": "int"},
            {"name": "reason", "type": "string"},
            {"name": "registrations_up", "type": "int"},
            {"name": "registrations_wanted", "type": "int"},
            {"name": "contacts", "type": {"type": "array", "items": {
                "type": "record", "name": "ContactStatus", "namespace": NS,
                "fields": [{"name": "uri", "type": "string"},
                           {"name": "expires_at", "type": ["null", stamp]}]}}},
            {"name": "peers", "type": {"type": "array", "items": {
                "type": "record", "name": "PeerStatus", "namespace": NS,
                "fields": [{"name": "address", "type": "string"},
                           {"name": "up", "type": "boolean"},
                           {"name": "rtt_ms", "type": ["null", "double"]},
                           {"name": "since", "type": stamp}]}}},
            {"name": "active_inbound", "type": "int"},
            {"name": "active_outbound", "type": "int"},
            {"name": "alerts", "type": _STRINGS, "default": []},
            {"name": "target", "type": "string", "default": ""},
        ],
    }


def heartbeat_schema() -> dict[str, Any]:
    stamp = {"type": "long", "logicalType": "timestamp-micros"}
    return {
        "type": "record", "name": HEARTBEAT_RECORD.rpartition(".")[2],
        "namespace": HEARTBEAT_RECORD.rpartition(".")[0],
        "fields": [{"name": "agent_id", "type": "string"},
                   {"name": "address", "type": "string"},
                   {"name": "tenants", "type": _STRINGS},
                   {"name": "observed_at", "type": stamp},
                   {"name": "started_at", "type": stamp},
                   {"name": "leaving", "type": "boolean", "default": False},
                   {"name": "partitions", "type": {"type": "array", "items": "int"},
                    "default": []}],
    }


def call_schema() -> dict[str, Any]:
    """A call record (domain.calls.CallRecord): no secrets, so nothing sealed."""
    stamp = {"type": "long", "logicalType": "timestamp-micros"}
    attempt = {"type": "record", "name": "CallAttempt", "namespace": NS,
               "fields": [{"name": "trunk_id", "type": "string"},
                          {"name": "trunk_name", "type": "string"},
                          {"name": "code", "type": "int"},
                          {"name": "reason", "type": "string"}]}
    text = ("call_id", "tenant", "direction", "agent_id")
    numbers = ("number_received", "number_sent", "caller_received", "caller_sent", "trunk_id")
    return {
        "type": "record", "name": CALL_RECORD.rpartition(".")[2],
        "namespace": CALL_RECORD.rpartition(".")[0],
        "fields": [*({"name": n, "type": "string"} for n in text),
                   {"name": "attempts", "type": {"type": "array", "items": attempt}},
                   *({"name": n, "type": "string"} for n in numbers),
                   {"name": "started_at", "type": stamp},
                   {"name": "answered_at", "type": ["null", stamp]},
                   {"name": "ended_at", "type": stamp},
                   {"name": "final_code", "type": "int"},
                   {"name": "final_reason", "type": "string"},
                   {"name": "hangup_by", "type": "string"}],
    }


def head_schema() -> dict[str, Any]:
    """A signed tree head (infra.ledger.signing.SignedHead) and the log position it
    covers: the broker keeps a second copy of every head, out of the database's reach."""
    return {
        "type": "record", "name": HEAD_RECORD.rpartition(".")[2],
        "namespace": HEAD_RECORD.rpartition(".")[0],
        "fields": [{"name": "tree_size", "type": "long"},
                   {"name": "timestamp_ms", "type": "long"},
                   {"name": "root_hash", "type": "bytes"},
                   {"name": "key_id", "type": "string"},
                   {"name": "signature", "type": "bytes"},
                   {"name": "position", "type": "long"}],
    }


def current_schemas() -> dict[str, dict[str, Any]]:
    """What the code writes today, by record full name."""
    schemas = {record_name(cls): event_schema(cls) for cls in published_events()}
    schemas[STATUS_RECORD] = status_schema()
    schemas[HEARTBEAT_RECORD] = heartbeat_schema()
    schemas[CALL_RECORD] = call_schema()
    schemas[HEAD_RECORD] = head_schema()
    schemas[STATE_RECORD] = state_schema()
    schemas[POSITION_RECORD] = position_schema()
    return schemas


def released(directory: Path = SCHEMA_DIR) -> dict[str, list[dict[str, Any]]]:
    """Every released version of every record, oldest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    if not directory.is_dir():
        return out
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        files = sorted(folder.glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
        out[folder.name] = [json.loads(f.read_text()) for f in files]
    return out


def canonical(schema: Mapping[str, Any]) -> str:
    return str(to_parsing_canonical_form(parse_schema(dict(schema), _write_hint=False)))


def same(one: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Equal to the letter, defaults and docs included (they matter when reading)."""
    return json.dumps(one, sort_keys=True) == json.dumps(other, sort_keys=True)


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    return bytes.fromhex(fingerprint(canonical(schema), "CRC-64-AVRO"))[::-1]


def release(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Writes a new version for every record whose schema changed; returns the files."""
    written = []
    have = released(directory)
    for name, schema in current_schemas().items():
        versions = have.get(name, [])
        if versions and same(versions[-1], schema):
            continue
        path = directory / name / f"v{len(versions) + 1}.avsc"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(path)
    return written




def compatibility_problems(versions: Iterable[Mapping[str, Any]]) -> list[str]:
    """Full transitive compatibility: a sample written with any version must read with
    every other version. Returns what fails, empty when all is well."""
    history = [dict(v) for v in versions]
    problems = []
    for i, writer in enumerate(history):
        parsed_writer = parse_schema(writer)
        out = io.BytesIO()
        schemaless_writer(out, parsed_writer, sample(writer))
        for j, reader in enumerate(history):
            try:
                schemaless_reader(io.BytesIO(out.getvalue()), parsed_writer,
                                  parse_schema(reader))
            except Exception as error:  # the resolution error types vary
                problems.append(f"{writer['namespace']}.{writer['name']}: v{i + 1} written, "
                                f"v{j + 1} reading: {error}")
    return problems


def sample(schema: Any, named: dict[str, Any] | None = None) -> Any:
    """A value of every field, non-empty arrays and non-null unions included."""
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in named:
            return sample(named[schema], named)
        return {"string": "x", "long": 1, "int": 1, "boolean": True, "double": 1.5,
                "bytes": b"\x01\x02", "null": None, "float": 1.0}[schema]
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        return sample(branches[0], named) if branches else None
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        named[f"{schema.get('namespace', '')}.{schema['name']}"] = schema
        return {f["name"]: sample(f["type"], named) for f in schema["fields"]}
    if kind == "array":
        return [sample(schema["items"], named)]
    if kind == "map":
        return {"k": sample(schema["values"], named)}
    if kind == "enum":
        return schema["symbols"][0]
    if schema.get("logicalType") == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    if schema.get("logicalType") == "timestamp-micros":
        return datetime(2026, 1, 1).astimezone()
    return sample(kind, named)
