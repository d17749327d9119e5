"""Domain events, status observations and call records as Avro, in Avro's single-object
encoding.

A payload is `C3 01`, the CRC-64-AVRO fingerprint of the writer schema (8 bytes, little
endian), then the schemaless body. The decoder finds the writer schema by fingerprint and
reads with the newest version of the same record. Passwords travel sealed with the wire
key ring (infra.security.sealing: AES-GCM, key id in the record, bound to the aggregate and
field); the broker never holds a clear password."""

from __future__ import annotations

import gc
import io
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.utils import get_topic
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from domain.calls import CallAttempt, CallRecord
from domain.feeds import AggregateState, StatePosition, published_events
from domain.model import Configured, own_fields
from domain.status import (
    AgentHeartbeat,
    ContactStatus,
    PeerStatus,
    StatusObservation,
    TrunkState,
)
from domain.trunk_settings import SECRET_FIELDS
from infra.ledger.signing import SignedHead
from infra.messaging.schemas import (
    CALL_RECORD,
    HEAD_RECORD,
    HEARTBEAT_RECORD,
    POSITION_RECORD,
    STATE_RECORD,
    STATE_SETTINGS,
    STATUS_RECORD,
    aggregate_of,
    canonical,
    current_schemas,
    record_name,
    released,
    schema_fingerprint,
)
from infra.security.sealing import SealError, WireCipher

MAGIC = b"\xc3\x01"


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = True


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a batch of events is decoded or encoded:
    the thousands of objects a batch keeps alive (events, their settings) are acyclic,
    and the collector's passes over them halved the relay's rate (bench/relay.py, same
    run). Threads may nest it; the last one out turns it back on (if it was on)."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


class AvroError(ValueError):
    """A payload that cannot be decoded: unknown writer schema, corrupt body, bad seal."""


@dataclass(frozen=True)
class _EventClass:
    """What encoding and decoding an event class needs, worked out once per class."""

    cls: type
    name: str  # its record's published name
    fields: tuple[str, ...]  # its own fields
    sealed: frozenset[str]  # those of them that travel sealed
    topic: str  # a Created event's aggregate topic ("" for the others)


class Decoded(NamedTuple):  # (a named tuple: made for every record read, and cheaper)
    record: str  # the record's published name
    position: int
    tenant: str
    value: Any  # the domain event, a StatusObservation, AgentHeartbeat or CallRecord


class AvroCodec:
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
                                   f"run `python -m infra.messaging.release`")
        # The reader schema is None for a payload written with the newest version: fastavro
        # compares writer and reader schemas on every read (two parsed copies of one schema
        # compared in full), which tripled the cost of a decode (bench/relay.py)
        for name, history in versions.items():
            newest = parse_schema(history[-1])
            for schema in history[:-1]:
                self._readers[schema_fingerprint(schema)] = (name, parse_schema(schema), newest)
            self._readers[schema_fingerprint(history[-1])] = (name, newest, None)
            if name in current:
                self._writers[name] = (schema_fingerprint(history[-1]), newest)
        for name, schema in current.items():  # records never released (tests, new code)
            if name not in self._writers:
                parsed = parse_schema(schema)
                mark = schema_fingerprint(schema)
                self._writers[name] = (mark, parsed)
                self._readers[mark] = (name, parsed, None)
        self._events = {cls: _EventClass(
            cls, record_name(cls), own_fields(cls), frozenset(own_fields(cls)) & SECRET_FIELDS,
            get_topic(aggregate_of(cls)) if issubclass(cls, Configured.Created) else "")
            for cls in published_events()}
        self._classes = {known.name: known for known in self._events.values()}

    def publishes(self, event: Any) -> bool:
        return type(event) in self._events

    def _write(self, name: str, record: Mapping[str, Any]) -> bytes:
        mark, parsed = self._writers[name]
        out = io.BytesIO()
        out.write(MAGIC + mark)
        schemaless_writer(out, parsed, dict(record))
        return out.getvalue()

    def encode_event(self, event: Any, position: int, tenant: str) -> bytes:
        known = self._events.get(type(event))
        if known is None:
            raise AvroError(f"{type(event).__qualname__} is not a published event")
        bound = str(event.originator_id)
        record: dict[str, Any] = {
            "position": position, "tenant": tenant, "originator_id": bound,
            "originator_version": event.originator_version, "timestamp": event.timestamp,
            "actor": event.actor, "reason": event.reason, "request_id": event.request_id,
        }
        if known.topic:  # a Created event: its settings
            settings = dict(event.settings)
            for f in SECRET_FIELDS & settings.keys():
                settings[f] = self._seal(settings[f], bound, f)
            record["settings"] = settings
        else:
            for f in known.fields:
                value = getattr(event, f)
                record[f] = self._seal(value, bound, f) if f in known.sealed else value
        return self._write(known.name, record)

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
        try:
            return self.cipher.open(sealed, f"{bound}/{field}")
        except SealError as error:
            raise AvroError(str(error)) from None

    def encode_status(self, observation: StatusObservation) -> bytes:
        o = observation
        return self._write(STATUS_RECORD, {
            "tenant": o.tenant, "trunk_id": o.trunk_id, "agent_id": o.agent_id,
            "sequence": o.sequence, "observed_at": o.observed_at, "state": o.state.value,
            "since": o.since, "sip_code": o.sip_code, "reason": o.reason,
            "registrations_up": o.registrations_up,
            "registrations_wanted": o.registrations_wanted,
            "contacts": [{"uri": c.uri, "expires_at": c.expires_at} for c in o.contacts],
            "peers": [{"address": p.address, "up": p.up, "rtt_ms": p.rtt_ms,
                       "since": p.since} for p in o.peers],
            "active_inbound": o.active_inbound, "active_outbound": o.active_outbound,
            "alerts": list(o.alerts), "target": o.target,
        })

    def encode_heartbeat(self, heartbeat: AgentHeartbeat) -> bytes:
        h = heartbeat
        return self._write(HEARTBEAT_RECORD, {
            "agent_id": h.agent_id, "address": h.address, "tenants": list(h.tenants),
            "observed_at": h.observed_at, "started_at": h.started_at,
            "leaving": h.leaving, "partitions": list(h.partitions)})

    def encode_call(self, record: CallRecord) -> bytes:
        r = record
        return self._write(CALL_RECORD, {
            "call_id": r.call_id, "tenant": r.tenant, "direction": r.direction,
            "agent_id": r.agent_id,
            "attempts": [{"trunk_id": a.trunk_id, "trunk_name": a.trunk_name, "code": a.code,
                          "reason": a.reason} for a in r.attempts],
            "number_received": r.number_received, "number_sent": r.number_sent,
            "caller_received": r.caller_received, "caller_sent": r.caller_sent,
            "trunk_id": r.trunk_id, "started_at": r.started_at, "answered_at": r.answered_at,
            "ended_at": r.ended_at, "final_code": r.final_code,
            "final_reason": r.final_reason, "hangup_by": r.hangup_by})

    def encode_head(self, head: SignedHead, position: int) -> bytes:
        return self._write(HEAD_RECORD, {
            "tree_size": head.size, "timestamp_ms": head.timestamp_ms,
            "root_hash": head.root, "key_id": head.key_id, "signature": head.signature,
            "position": position})

    def encode_state(self, state: AggregateState) -> bytes:
        """A snapshot for the state topic; passwords sealed as in its Created event."""
        record: dict[str, Any] = {
            "tenant": state.tenant, "aggregate_id": str(state.aggregate_id),
            "kind": state.kind, "version": state.version, "order": list(state.order),
            "order_version": state.order_version, "policy": state.policy,
            "policy_version": state.policy_version}
        if state.kind in STATE_SETTINGS and state.settings is not None:
            bound = str(state.aggregate_id)
            settings = dict(state.settings)
            for f in SECRET_FIELDS & settings.keys():
                settings[f] = self._seal(settings[f], bound, f)
            record[state.kind] = settings
        return self._write(STATE_RECORD, record)

    def encode_position(self, position: StatePosition) -> bytes:
        return self._write(POSITION_RECORD, {"partition": position.partition,
                                             "offset": position.offset})

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
        known = self._classes.get(name)
        if known is not None:  # a domain event, by far the most read
            return Decoded(name, int(record["position"]), str(record["tenant"]),
                           self._event(known, record))
        if name == STATUS_RECORD:
            return Decoded(name, 0, str(record["tenant"]), _observation(record))
        if name == CALL_RECORD:
            return Decoded(name, 0, str(record["tenant"]), _call(record))
        if name == HEAD_RECORD:
            return Decoded(name, int(record["position"]), "", SignedHead(
                record["tree_size"], record["timestamp_ms"], record["root_hash"],
                record["key_id"], record["signature"]))
        if name == STATE_RECORD:
            return Decoded(name, 0, str(record["tenant"]), self._state(record))
        if name == POSITION_RECORD:
            return Decoded(name, int(record["offset"]), "", StatePosition(
                int(record["partition"]), int(record["offset"])))
        if name == HEARTBEAT_RECORD:
            return Decoded(name, 0, "", AgentHeartbeat(
                record["agent_id"], record["address"], tuple(record["tenants"]),
                record["observed_at"], record["started_at"], bool(record["leaving"]),
                tuple(record["partitions"])))
        raise AvroError(f"{name} is not an event this process knows")

    def _state(self, record: dict[str, Any]) -> AggregateState:
        kind = str(record["kind"])
        bound = str(record["aggregate_id"])
        settings = record.get(kind) if kind in STATE_SETTINGS else None
        if settings is not None:
            settings = dict(settings)
            for f in SECRET_FIELDS & settings.keys():
                settings[f] = self._open(settings[f], bound, f)
        policy = record["policy"]
        return AggregateState(
            tenant=str(record["tenant"]), aggregate_id=UUID(bound), kind=kind,
            version=int(record["version"]), settings=settings,
            order=tuple(record["order"]), order_version=int(record["order_version"]),
            policy=None if policy is None else dict(policy),
            policy_version=int(record["policy_version"]))

    def _event(self, known: _EventClass, record: dict[str, Any]) -> Any:
        originator = record["originator_id"]  # fastavro reads the uuid logical type
        if not isinstance(originator, UUID):
            originator = UUID(str(originator))
        bound = ""  # the id's text, which a sealed password is bound to: made once, if needed
        state: dict[str, Any] = {
            "originator_id": originator,
            "originator_version": int(record["originator_version"]),
            "timestamp": record["timestamp"],
            "actor": record["actor"], "reason": record["reason"],
            "request_id": record["request_id"],
        }
        if known.topic:  # a Created event: its settings (fastavro's dict, ours to change)
            settings = record["settings"]
            for f in SECRET_FIELDS:
                if settings.get(f) is not None:
                    bound = bound or str(originator)
                    settings[f] = self._open(settings[f], bound, f)
                elif f in settings:
                    settings[f] = ""
            state.update(tenant=record["tenant"], settings=settings,
                         originator_topic=known.topic)
        else:
            for f in known.fields:
                value = record[f]
                if f in known.sealed and value is not None:
                    bound = bound or str(originator)
                    value = self._open(value, bound, f)
                elif f in known.sealed:
                    value = ""
                state[f] = value
        # built as the library's own mapper builds an event it reads from the store: its
        # fields set as its __dict__, not through the frozen dataclass's __init__ (which
        # sets them one by one; a fifth of our part of a decode). `fields` lists exactly
        # the class's fields (the round-trip tests compare them), and the one check its
        # __post_init__ makes, a UUID originator_id, holds above.
        event: Any = object.__new__(known.cls)
        object.__setattr__(event, "__dict__", state)
        return event


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
        alerts=tuple(r["alerts"]), target=r["target"])



def _call(r: dict[str, Any]) -> CallRecord:
    return CallRecord(
        call_id=r["call_id"], tenant=r["tenant"], direction=r["direction"],
        agent_id=r["agent_id"],
        attempts=tuple(CallAttempt(a["trunk_id"], a["trunk_name"], a["code"], a["reason"])
                       for a in r["attempts"]),
        number_received=r["number_received"], number_sent=r["number_sent"],
        caller_received=r["caller_received"], caller_sent=r["caller_sent"],
        trunk_id=r["trunk_id"], started_at=r["started_at"], answered_at=r["answered_at"],
        ended_at=r["ended_at"], final_code=r["final_code"], final_reason=r["final_reason"],
        hangup_by=r["hangup_by"])
