"""Domain events and status observations as Avro, in Avro's single-object encoding.

Each published event class has one record schema, named like the Python class (namespace
`domain.trunk.Trunk`, name `ServerChanged`), generated from the class's fields. Every
version ever released is a file `protos/avro/<full name>/v<N>.avsc`; `python -m infra.avro
release` writes a new version when the code's schema differs from the newest file, and the
tests fail until it has (and when a new version cannot read and be read by every old one).

A payload is `C3 01`, the CRC-64-AVRO fingerprint of the writer schema (8 bytes, little
endian), then the schemaless body. The decoder finds the writer schema by fingerprint and
reads with the newest version of the same record. Passwords travel sealed with the wire
key ring (AES-GCM, key id in the record, bound to the aggregate and field); the broker never
holds a clear password."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.utils import get_topic
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from domain.catalog import TenantCatalog
from domain.feeds import published_events
from domain.model import Configured, own_fields
from domain.routes import InboundRoute, OutboundRoute
from domain.status import (
    AgentHeartbeat,
    ContactStatus,
    PeerStatus,
    StatusObservation,
    TrunkState,
)
from domain.trunk import Trunk

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "protos" / "avro"
MAGIC = b"\xc3\x01"
NS = "trunkplane.avro"

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
    "strategy": "string", "dial_patterns": {"type": "array", "items": DIAL_PATTERN},
    "trunks": {"type": "array", "items": ROUTE_TRUNK}, "allowed_extensions": _STRINGS,
    "did_pattern": "string", "caller_id_pattern": "string", "trunk_id": "string",
    "destination": "string", "order": _STRINGS, "tenant": "string", "guard": GUARD,
    "policy": POLICY,
}
# Fields added after a record's first release need a default, so old payloads still read.
FIELD_DEFAULTS: dict[str, Any] = {"guard": NO_GUARD}
SETTINGS_FIELDS: dict[type, tuple[str, ...]] = {
    Trunk: ("name", "type", "host", "transport", "username", "password", "auth_id",
            "max_registrations", "from_user", "from_domain", "peer_addresses", "codecs",
            "dtmf_mode", "nat", "call_limits", "enabled", "description"),
    OutboundRoute: ("name", "strategy", "enabled", "description", "dial_patterns", "trunks",
                    "allowed_extensions", "guard"),
    InboundRoute: ("did_pattern", "caller_id_pattern", "trunk_id", "destination", "enabled",
                   "description"),
}
SECRET_FIELDS = frozenset({"password"})


class AvroError(ValueError):
    """A payload that cannot be decoded: unknown writer schema, corrupt body, bad seal."""


def full_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _aggregate_of(cls: type) -> type:
    owner = cls.__qualname__.rpartition(".")[0]
    return {c.__qualname__: c for c in (Trunk, OutboundRoute, InboundRoute, TenantCatalog)}[
        owner]


def event_schema(cls: type) -> dict[str, Any]:
    namespace, _, name = full_name(cls).rpartition(".")
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
    aggregate = _aggregate_of(cls)
    if issubclass(cls, Configured.Created):
        fields.append({"name": "settings", "type": {
            "type": "record", "name": f"{aggregate.__name__}Settings", "namespace": NS,
            "fields": [_field(f) for f in SETTINGS_FIELDS[aggregate]]}})
    else:
        fields += [_field(f) for f in own_fields(cls) if f != "tenant"]
    return {"type": "record", "name": name, "namespace": namespace, "fields": fields}


def _field(name: str) -> dict[str, Any]:
    field: dict[str, Any] = {"name": name, "type": FIELD_TYPES[name]}
    if name in FIELD_DEFAULTS:
        field["default"] = FIELD_DEFAULTS[name]
    return field


def status_schema() -> dict[str, Any]:
    stamp = {"type": "long", "logicalType": "timestamp-micros"}
    return {
        "type": "record", "name": "StatusObservation", "namespace": "domain.status",
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
        ],
    }


def heartbeat_schema() -> dict[str, Any]:
    stamp = {"type": "long", "logicalType": "timestamp-micros"}
    return {
        "type": "record", "name": "AgentHeartbeat", "namespace": "domain.status",
        "fields": [{"name": "agent_id", "type": "string"},
                   {"name": "address", "type": "string"},
                   {"name": "tenants", "type": _STRINGS},
                   {"name": "observed_at", "type": stamp},
                   {"name": "started_at", "type": stamp}],
    }


def current_schemas() -> dict[str, dict[str, Any]]:
    """What the code writes today, by record full name."""
    schemas = {full_name(cls): event_schema(cls) for cls in published_events()}
    schemas["domain.status.StatusObservation"] = status_schema()
    schemas["domain.status.AgentHeartbeat"] = heartbeat_schema()
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


# --- the wire key ring -------------------------------------------------------------------

class WireCipher:
    """Seals secrets for the broker with a key ring shared by control planes and agents
    (TRUNKPLANE_WIRE_KEY, `id:base64key,...`, newest last). It is a different ring from
    the store's: an agent can read the credentials it needs and nothing else."""

    def __init__(self, ring: str) -> None:
        keys: dict[str, AESGCM] = {}
        for item in (i.strip() for i in ring.split(",") if i.strip()):
            key_id, sep, key = item.partition(":")
            if not sep or not key_id:
                raise ValueError("TRUNKPLANE_WIRE_KEY: write it as id:base64key[,id:key...]")
            try:
                keys[key_id] = AESGCM(base64.b64decode(key, validate=True))
            except ValueError as error:
                raise ValueError(f"TRUNKPLANE_WIRE_KEY: key {key_id}: {error}") from None
        if not keys:
            raise ValueError("TRUNKPLANE_WIRE_KEY is empty")
        self._keys = keys
        self.current = list(keys)[-1]
        self._pool = b""
        self._pool_lock = threading.Lock()

    @staticmethod
    def new_key() -> str:
        return base64.b64encode(AESGCM.generate_key(256)).decode()

    def _nonce(self) -> bytes:
        """Random 96-bit nonces, drawn from the kernel 4 KiB at a time (one getrandom
        call costs ~10 us here, as much as the sealing itself)."""
        with self._pool_lock:  # never the same nonce twice, whatever the threads
            if len(self._pool) < 12:
                self._pool = os.urandom(4092)
            nonce, self._pool = self._pool[:12], self._pool[12:]
        return nonce

    def seal(self, secret: str, bound_to: str) -> dict[str, Any]:
        nonce = self._nonce()
        sealed = self._keys[self.current].encrypt(nonce, secret.encode(), bound_to.encode())
        return {"key_id": self.current, "nonce": nonce, "ciphertext": sealed}

    def open(self, sealed: Mapping[str, Any], bound_to: str) -> str:
        key = self._keys.get(sealed["key_id"])
        if key is None:
            raise AvroError(f"secret sealed with wire key {sealed['key_id']!r}, which "
                            f"TRUNKPLANE_WIRE_KEY lacks (it has {', '.join(self._keys)})")
        try:
            return key.decrypt(sealed["nonce"], sealed["ciphertext"], bound_to.encode()).decode()
        except InvalidTag:
            raise AvroError("a sealed secret does not open with its key: wrong key or "
                            "tampered payload") from None


# --- encoding and decoding ---------------------------------------------------------------

@dataclass(frozen=True)
class Decoded:
    record: str  # full name of the record
    position: int
    tenant: str
    value: Any  # the domain event, or a StatusObservation


class Codec:
    """Encodes with the code's current schemas, decodes any released version."""

    def __init__(self, cipher: WireCipher | None,
                 versions: Mapping[str, list[dict[str, Any]]] | None = None) -> None:
        self.cipher = cipher
        versions = released() if versions is None else versions
        current = current_schemas()
        self._writers: dict[str, tuple[bytes, Any]] = {}
        self._readers: dict[bytes, tuple[str, Any, Any]] = {}
        for name, schema in current.items():
            history = versions.get(name) or [schema]
            if canonical(history[-1]) != canonical(schema):
                raise RuntimeError(f"the Avro schema of {name} changed without a release: "
                                   f"run `python -m infra.avro release`")
        for name, history in versions.items():
            newest = parse_schema(history[-1])
            for schema in history:
                self._readers[schema_fingerprint(schema)] = (name, parse_schema(schema), newest)
            if name in current:
                self._writers[name] = (schema_fingerprint(history[-1]), newest)
        for name, schema in current.items():  # records never released (tests, new code)
            if name not in self._writers:
                parsed = parse_schema(schema)
                mark = schema_fingerprint(schema)
                self._writers[name] = (mark, parsed)
                self._readers[mark] = (name, parsed, parsed)
        self._classes = {full_name(cls): cls for cls in published_events()}

    def publishes(self, event: Any) -> bool:
        return full_name(type(event)) in self._classes

    def _write(self, name: str, record: Mapping[str, Any]) -> bytes:
        mark, parsed = self._writers[name]
        out = io.BytesIO()
        out.write(MAGIC + mark)
        schemaless_writer(out, parsed, dict(record))
        return out.getvalue()

    def encode_event(self, event: Any, position: int, tenant: str) -> bytes:
        cls = type(event)
        name = full_name(cls)
        record: dict[str, Any] = {
            "position": position, "tenant": tenant,
            "originator_id": str(event.originator_id),
            "originator_version": event.originator_version, "timestamp": event.timestamp,
            "actor": event.actor, "reason": event.reason, "request_id": event.request_id,
        }
        bound = str(event.originator_id)
        if isinstance(event, Configured.Created):
            settings = dict(event.settings)
            for f in SECRET_FIELDS & settings.keys():
                settings[f] = self._seal(settings[f], bound, f)
            record["settings"] = settings
        else:
            for f in own_fields(cls):
                value = getattr(event, f)
                record[f] = self._seal(value, bound, f) if f in SECRET_FIELDS else value
        return self._write(name, record)

    def _seal(self, secret: str, bound: str, field: str) -> dict[str, Any] | None:
        if not secret:
            return None
        if self.cipher is None:
            raise AvroError("cannot publish a password without a wire key "
                            "(TRUNKPLANE_WIRE_KEY)")
        return self.cipher.seal(secret, f"{bound}/{field}")

    def _open(self, sealed: Mapping[str, Any] | None, bound: str, field: str) -> str:
        if sealed is None:
            return ""
        if self.cipher is None:
            raise AvroError("a payload carries a sealed password and no wire key is set "
                            "(TRUNKPLANE_WIRE_KEY)")
        return self.cipher.open(sealed, f"{bound}/{field}")

    def encode_status(self, observation: StatusObservation) -> bytes:
        o = observation
        return self._write("domain.status.StatusObservation", {
            "tenant": o.tenant, "trunk_id": o.trunk_id, "agent_id": o.agent_id,
            "sequence": o.sequence, "observed_at": o.observed_at, "state": o.state.value,
            "since": o.since, "sip_code": o.sip_code, "reason": o.reason,
            "registrations_up": o.registrations_up,
            "registrations_wanted": o.registrations_wanted,
            "contacts": [{"uri": c.uri, "expires_at": c.expires_at} for c in o.contacts],
            "peers": [{"address": p.address, "up": p.up, "rtt_ms": p.rtt_ms,
                       "since": p.since} for p in o.peers],
            "active_inbound": o.active_inbound, "active_outbound": o.active_outbound,
            "alerts": list(o.alerts),
        })

    def encode_heartbeat(self, heartbeat: AgentHeartbeat) -> bytes:
        h = heartbeat
        return self._write("domain.status.AgentHeartbeat", {
            "agent_id": h.agent_id, "address": h.address, "tenants": list(h.tenants),
            "observed_at": h.observed_at, "started_at": h.started_at})

    def decode(self, payload: bytes) -> Decoded:
        if len(payload) < 10 or payload[:2] != MAGIC:
            raise AvroError("not an Avro single-object payload (no C3 01 marker)")
        found = self._readers.get(payload[2:10])
        if found is None:
            raise AvroError(f"unknown writer schema fingerprint {payload[2:10].hex()}: the "
                            "producer is newer than this process, or the payload is corrupt")
        name, writer, reader = found
        body = io.BytesIO(payload[10:])
        try:
            record = schemaless_reader(body, writer, reader)
        except Exception as error:  # fastavro raises many types on a corrupt body
            raise AvroError(f"corrupt {name} payload: {type(error).__name__}: {error}") from None
        if body.tell() != len(payload) - 10:
            raise AvroError(f"corrupt {name} payload: {len(payload) - 10 - body.tell()} "
                            "bytes after the record")
        if not isinstance(record, dict):
            raise AvroError(f"corrupt {name} payload")
        if name == "domain.status.StatusObservation":
            return Decoded(name, 0, str(record["tenant"]), _observation(record))
        if name == "domain.status.AgentHeartbeat":
            return Decoded(name, 0, "", AgentHeartbeat(
                record["agent_id"], record["address"], tuple(record["tenants"]),
                record["observed_at"], record["started_at"]))
        return Decoded(name, int(record["position"]), str(record["tenant"]),
                       self._event(name, record))

    def _event(self, name: str, record: dict[str, Any]) -> Any:
        cls = self._classes.get(name)
        if cls is None:
            raise AvroError(f"{name} is not an event this process knows")
        bound = str(record["originator_id"])
        kwargs: dict[str, Any] = {
            "originator_id": UUID(bound),
            "originator_version": int(record["originator_version"]),
            "timestamp": record["timestamp"],
            "actor": record["actor"], "reason": record["reason"],
            "request_id": record["request_id"],
        }
        if issubclass(cls, Configured.Created):
            settings = dict(record["settings"])
            for f in SECRET_FIELDS & settings.keys():
                settings[f] = self._open(settings[f], bound, f)
            kwargs.update(tenant=record["tenant"], settings=settings,
                          originator_topic=get_topic(_aggregate_of(cls)))
        else:
            for f in own_fields(cls):
                value = record[f]
                kwargs[f] = self._open(value, bound, f) if f in SECRET_FIELDS else value
        return cls(**kwargs)


def _observation(r: dict[str, Any]) -> StatusObservation:
    return StatusObservation(
        tenant=r["tenant"], trunk_id=r["trunk_id"], agent_id=r["agent_id"],
        sequence=r["sequence"], observed_at=r["observed_at"], state=TrunkState(r["state"]),
        since=r["since"], sip_code=r["sip_code"], reason=r["reason"],
        registrations_up=r["registrations_up"],
        registrations_wanted=r["registrations_wanted"],
        contacts=tuple(ContactStatus(c["uri"], c["expires_at"]) for c in r["contacts"]),
        peers=tuple(PeerStatus(p["address"], p["up"], p["rtt_ms"], p["since"])
                    for p in r["peers"]),
        active_inbound=r["active_inbound"], active_outbound=r["active_outbound"],
        alerts=tuple(r["alerts"]))


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


def main(argv: list[str]) -> int:
    if argv[:1] == ["release"]:
        for path in release():
            print(f"wrote {path.relative_to(SCHEMA_DIR.parent.parent)}")
        problems = [p for versions in released().values()
                    for p in compatibility_problems(versions)]
        for problem in problems:
            print(f"INCOMPATIBLE: {problem}", file=sys.stderr)
        return 1 if problems else 0
    print("usage: python -m infra.avro release", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
