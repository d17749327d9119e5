"""Each trunk field is declared once (domain.trunk.TRUNK_FIELDS); everything else that
lists the fields is derived from it or must agree with it, and this test says where not."""

from __future__ import annotations

from domain.model import own_fields
from domain.trunk import TRUNK_FIELDS, Trunk
from domain.trunk_settings import SECRET_FIELDS, default_settings
from infra.grpc_api.convert import trunk_message, trunk_settings
from infra.messaging.schemas import event_schema
from trunkplane.v1 import trunk_pb2

NAMES = [f.name for f in TRUNK_FIELDS]


def test_defaults_events_and_secrets_come_from_the_table() -> None:
    assert list(default_settings()) == NAMES
    for spec in TRUNK_FIELDS:
        if spec.event is not None:
            assert spec.name in own_fields(spec.event), spec.name
    assert set(Trunk.EVENT_FOR_FIELD) == set(NAMES) - {"enabled"}
    # SECRET_FIELDS also holds a webhook channel's `secret` (domain.alerting).
    assert {f.name for f in TRUNK_FIELDS if f.secret} == SECRET_FIELDS - {"secret"}


def test_the_proto_and_the_avro_record_carry_every_field() -> None:
    proto = set(trunk_pb2.Trunk.DESCRIPTOR.fields_by_name)
    assert set(NAMES) <= proto, set(NAMES) - proto
    record = event_schema(Trunk.Created)
    settings = next(f for f in record["fields"] if f["name"] == "settings")["type"]
    assert [f["name"] for f in settings["fields"]] == NAMES


def test_the_grpc_conversion_round_trips_every_field_but_the_secret() -> None:
    settings = default_settings()
    settings.update(name="voco", type="register", host="sip.example.com", username="1001",
                    password="Secret-Password-42", codecs=["PCMA"], peer_addresses=["10.0.0.1"],
                    description="d", enabled=False)
    doc = {"id": "t", "tenant": "acme", "settings": settings, "version": 1,
           "create_time": "2026-01-01T00:00:00+00:00",
           "update_time": "2026-01-01T00:00:00+00:00"}
    back = trunk_settings(trunk_message(doc))
    assert back == {**settings, "password": ""}
