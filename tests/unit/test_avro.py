"""The Avro wire format: released schemas, compatibility, single-object framing, sealed
secrets, and clean errors on bad payloads."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from domain import commands
from domain.application import TrunkplaneApp
from domain.feeds import PUBLISHED
from domain.model import CommandMeta
from domain.status import ContactStatus, PeerStatus, StatusObservation, TrunkState
from infra.messaging.codec import MAGIC, AvroCodec, AvroError
from infra.messaging.schemas import (
    compatibility_problems,
    current_schemas,
    record_name,
    release,
    released,
    same,
    schema_fingerprint,
)
from infra.security.sealing import SealError, WireCipher

PASSWORD = "Wire-Secret-Password-9"
META = CommandMeta(actor="alice", reason="r", request_id="")
K1 = "w1:" + WireCipher.new_key()
K2 = "w2:" + WireCipher.new_key()


@pytest.fixture
def events() -> Iterator[list[tuple[int, Any]]]:
    """A store with every kind of published event in it."""
    app = TrunkplaneApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    run = app.execute
    run(partial(commands.create_trunk, tenant="acme", template="", meta=META, raw={
        "name": "voco", "type": "register", "host": "sip.example.com", "username": "1001",
        "password": PASSWORD, "codecs": ["PCMU", "PCMA"]})).unwrap()
    run(partial(commands.create_trunk, tenant="acme", template="", meta=META, raw={
        "name": "peer", "type": "peer", "peer_addresses": ["192.0.2.10:5060"],
        "codecs": ["PCMU"]})).unwrap()
    run(partial(commands.update_trunk, tenant="acme", ref="voco", etag="", meta=META, patch={
        "password": "Another-Password-123", "codecs": ["PCMA", "PCMU"], "host": "sip2.example.com",
        "call_limits": {"max_concurrent_calls": 10, "max_inbound_calls": None,
                        "max_outbound_calls": 4},
        "nat": {"enabled": True, "external_ip": "203.0.113.5",
                "local_networks": ["10.0.0.0/8"], "stun_server": ""},
        "dtmf_mode": "info", "description": "main line", "from_user": "1001",
        "from_domain": "example.com", "name": "voco-main", "enabled": False})).unwrap()
    run(partial(commands.update_trunk, tenant="acme", ref="voco-main", etag="", meta=META,
                patch={"enabled": True, "codecs": ["G729"]})).unwrap()
    run(partial(commands.create_outbound_route, tenant="acme", position=None, meta=META, raw={
        "name": "us", "dial_patterns": [{"match": "NXXNXXXXXX", "prepend": "1"}],
        "trunks": [{"trunk_id": "voco-main"}, {"trunk_id": "peer"}],
        "allowed_extensions": ["1XX"]})).unwrap()
    run(partial(commands.create_inbound_route, tenant="acme", meta=META, raw={
        "did_pattern": "15551234567", "trunk_id": "peer",
        "destination": "ext:100"})).unwrap()
    notes = app.recorder.select_notifications(0, 1000)
    yield [(n.id, e) for n in notes if type(e := app.mapper.to_domain_event(n)) in PUBLISHED]
    app.close()


def test_the_code_writes_the_newest_released_schema_of_every_record() -> None:
    versions = released()
    for name, schema in current_schemas().items():
        assert name in versions, f"{name} was never released: python -m infra.messaging.release"
        assert same(versions[name][-1], schema), (
            f"{name} changed without a release: python -m infra.messaging.release")


def test_every_released_version_reads_and_is_read_by_every_other() -> None:
    problems = [p for history in released().values() for p in compatibility_problems(history)]
    assert problems == []


def test_an_incompatible_change_is_caught(tmp_path: Path) -> None:
    base = copy.deepcopy(current_schemas()["domain.trunk.Trunk.ServerChanged"])
    broken = copy.deepcopy(base)
    broken["fields"].append({"name": "region", "type": "string"})  # no default
    assert compatibility_problems([base, broken])  # v1 data cannot fill `region`
    compatible = copy.deepcopy(base)
    compatible["fields"].append({"name": "region", "type": "string", "default": ""})
    assert compatibility_problems([base, compatible]) == []
    renamed = copy.deepcopy(base)
    renamed["fields"][-1]["type"] = "int"  # transport: string -> int
    assert compatibility_problems([base, renamed])


def test_release_writes_a_new_version_only_when_the_schema_changed(tmp_path: Path) -> None:
    first = release(tmp_path)
    assert len(first) == len(current_schemas())
    assert release(tmp_path) == []
    path = tmp_path / "domain.trunk.Trunk.ServerChanged" / "v1.avsc"
    old = json.loads(path.read_text())
    old["fields"] = old["fields"][:-1]  # pretend v1 lacked the last field
    path.write_text(json.dumps(old))
    assert [p.name for p in release(tmp_path)] == ["v2.avsc"]


def test_old_payloads_decode_with_the_newest_reader(tmp_path: Path) -> None:
    """A v1 writer without `description`, a v2 reader that has it with a default."""
    name = "domain.trunk.Trunk.DescriptionChanged"
    v2 = current_schemas()[name]
    v1 = copy.deepcopy(v2)
    v1["fields"] = [f for f in v1["fields"] if f["name"] != "description"]
    v2 = copy.deepcopy(v2)
    next(f for f in v2["fields"] if f["name"] == "description")["default"] = ""
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(v1), {
        "position": 7, "tenant": "acme", "originator_id": "00000000-0000-4000-8000-000000000001",
        "originator_version": 3, "timestamp": datetime(2026, 1, 1, tzinfo=UTC), "actor": "a",
        "reason": "", "request_id": ""})
    payload = MAGIC + schema_fingerprint(v1) + body.getvalue()
    decoded = AvroCodec(None, {**released(), name: [v1, v2]}).decode(payload)
    assert decoded.position == 7 and decoded.value.description == ""


def test_every_event_round_trips_and_no_password_is_on_the_wire(
        events: list[tuple[int, Any]]) -> None:
    codec = AvroCodec(WireCipher(K1))
    kinds = {record_name(type(e)) for _, e in events}
    assert len(kinds) >= 14
    for position, event in events:
        payload = codec.encode_event(event, position, "acme")
        assert payload[:2] == b"\xc3\x01"
        assert PASSWORD.encode() not in payload and b"Another-Password" not in payload
        decoded = codec.decode(payload)
        assert (decoded.position, decoded.tenant, decoded.value) == (position, "acme", event)
        # built as the store's mapper builds events (its __dict__): every field, no other
        assert vars(decoded.value).keys() == {f.name for f in dataclasses.fields(event)}
        assert vars(decoded.value) == {f.name: getattr(event, f.name)
                                       for f in dataclasses.fields(event)}


def test_rotated_wire_keys_still_open_old_payloads(events: list[tuple[int, Any]]) -> None:
    position, created = events[0]
    old = AvroCodec(WireCipher(K1)).encode_event(created, position, "acme")
    rotated = AvroCodec(WireCipher(f"{K1},{K2}"))
    assert rotated.decode(old).value.settings["password"] == PASSWORD
    new = rotated.encode_event(created, position, "acme")
    assert b'w2' in new
    with pytest.raises(AvroError, match=r"w2.*lacks"):
        AvroCodec(WireCipher(K1)).decode(new)
    with pytest.raises(AvroError, match="no wire key"):
        AvroCodec(None).decode(new)


def test_a_sealed_password_is_bound_to_its_trunk(events: list[tuple[int, Any]]) -> None:
    codec = AvroCodec(WireCipher(K1))
    (p1, first), (p2, second) = events[0], events[1]
    one = codec.encode_event(first, p1, "acme")
    other = codec.encode_event(second, p2, "acme")
    assert b"w1" in one and b"w1" not in other  # the peer trunk has no password
    sealed = codec.cipher.seal(PASSWORD, f"{first.originator_id}/password")  # type: ignore[union-attr]
    with pytest.raises(SealError, match="does not open"):
        codec.cipher.open(sealed, f"{second.originator_id}/password")  # type: ignore[union-attr]


@pytest.mark.parametrize(("payload", "message"), [
    (b"", "no C3 01"),
    (b"{\"json\": true}", "no C3 01"),
    (MAGIC + b"\x00" * 8 + b"\x02", "unknown writer schema fingerprint 0000000000000000"),
])
def test_bad_payloads_are_clear_errors(payload: bytes, message: str) -> None:
    with pytest.raises(AvroError, match=message):
        AvroCodec(None).decode(payload)


def test_a_truncated_or_padded_body_is_corrupt(events: list[tuple[int, Any]]) -> None:
    codec = AvroCodec(WireCipher(K1))
    position, event = events[0]
    payload = codec.encode_event(event, position, "acme")
    with pytest.raises(AvroError, match=r"corrupt domain\.trunk\.Trunk\.Created"):
        codec.decode(payload[:-20])
    with pytest.raises(AvroError, match="bytes after the record"):
        codec.decode(payload + b"\x00\x00")


def test_status_observations_round_trip() -> None:
    at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    observation = StatusObservation(
        tenant="acme", trunk_id="t1", agent_id="agent-1", sequence=5, observed_at=at,
        state=TrunkState.DEGRADED, since=at, sip_code=503, reason="Service Unavailable",
        registrations_up=1, registrations_wanted=2,
        contacts=(ContactStatus("sip:1001@127.0.0.1:5062", at), ContactStatus("sip:x", None)),
        peers=(PeerStatus("192.0.2.1:5060", True, 12.5, at),
               PeerStatus("192.0.2.2:5060", False, None, at)),
        active_inbound=2, active_outbound=3, target="udp:192.0.2.7:5060 (sip2.example.com)")
    codec = AvroCodec(None)
    assert codec.decode(codec.encode_status(observation)).value == observation


def test_wire_key_settings_are_checked() -> None:
    for bad, message in [("", "empty"), ("nokey", "id:base64key"), ("w1:***", "w1")]:
        with pytest.raises(ValueError, match=message):
            WireCipher(bad)
