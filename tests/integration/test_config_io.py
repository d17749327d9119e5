"""Configuration backup and restore through the API, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from infra.config.settings import Settings
from tests.conftest import CIPHER_KEY, Api
from tests.integration.helpers import PASSWORD, create_route, create_trunk, update_trunk
from trunkplane.v1 import audit_pb2, audit_pb2_grpc, common_pb2, route_pb2, trunk_pb2

PASSPHRASE = "correct horse battery staple"


def populate(api: Api) -> None:
    create_trunk(api, "voco", codecs=["OPUS", "PCMU"],
                 call_limits=trunk_pb2.CallLimits(max_concurrent_calls=10))
    create_trunk(api, "carrier", type="peer", username="", password="",
                 peer_addresses=["192.0.2.10", "192.0.2.11:5080"])
    create_route(api, "US", ["voco", "carrier"])
    create_route(api, "INTL", ["carrier"], patterns=("011.",), position=1)
    api.routes.CreateInboundRoute(route_pb2.CreateInboundRouteRequest(
        route=route_pb2.InboundRoute(did_pattern="15551234567", trunk_id="voco",
                                     destination="ivr:main")))


def export(api: Api, with_secrets: bool = False) -> str:
    document: str = api.trunks.ExportConfiguration(trunk_pb2.ExportConfigurationRequest(
        with_secrets=with_secrets, passphrase=PASSPHRASE if with_secrets else "")).json
    return document


def restore(api: Api, document: str, dry_run: bool = False,
            passphrase: str = PASSPHRASE) -> trunk_pb2.ImportConfigurationResponse:
    answer: trunk_pb2.ImportConfigurationResponse = api.trunks.ImportConfiguration(
        trunk_pb2.ImportConfigurationRequest(
            json=document, passphrase=passphrase, dry_run=dry_run,
            options=common_pb2.CommandOptions(reason="import backup.json")),
        metadata=api.as_("restorer"))
    return answer


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[Api]:
    """A second service on an empty data directory."""
    fresh = Api(Settings(data_dir=tmp_path / "restored", database_url="",
                         cipher_key=CIPHER_KEY, listen="127.0.0.1:0", log_level="WARNING"))
    yield fresh
    fresh.close()


def test_export_leaves_secrets_out_or_seals_them(api: Api) -> None:
    populate(api)
    plain = json.loads(export(api))
    tenant = plain["tenants"]["default"]
    assert [t["name"] for t in tenant["trunks"]] == ["carrier", "voco"]
    assert [r["name"] for r in tenant["outbound_routes"]] == ["INTL", "US"]
    assert tenant["outbound_routes"][1]["trunks"] == [{"trunk": "voco", "weight": 1},
                                                      {"trunk": "carrier", "weight": 1}]
    assert tenant["inbound_routes"][0]["trunk"] == "voco"
    sealed = export(api, with_secrets=True)
    assert PASSWORD not in sealed and PASSWORD not in json.dumps(plain)
    assert "password_sealed" in json.loads(sealed)["tenants"]["default"]["trunks"][1]
    with pytest.raises(grpc.RpcError) as caught:
        api.trunks.ExportConfiguration(trunk_pb2.ExportConfigurationRequest(
            with_secrets=True, passphrase="short"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_restore_into_an_empty_service_gives_back_the_same_document(
    api: Api, empty: Api,
) -> None:
    populate(api)
    answer = restore(empty, export(api, with_secrets=True))
    assert answer.applied
    assert "default: create trunk voco" in answer.changes
    assert export(empty) == export(api)
    history = empty.trunks.GetTrunkHistory(trunk_pb2.GetTrunkHistoryRequest(trunk="voco"))
    assert (history.entries[0].actor, history.entries[0].reason) == ("restorer",
                                                                     "import backup.json")
    voco = empty.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="voco"))
    assert voco.password_set


def test_import_twice_changes_nothing_the_second_time(api: Api) -> None:
    populate(api)
    backup = export(api)
    update_trunk(api, "voco", trunk_pb2.Trunk(codecs=["G729"]), ["codecs"])
    move = route_pb2.UpdateOutboundRouteRequest(route="US",
                                                changes=route_pb2.OutboundRoute(position=1))
    move.update_mask.paths.append("position")
    api.routes.UpdateOutboundRoute(move)
    create_trunk(api, "extra")
    preview = restore(api, backup, dry_run=True)
    assert not preview.applied
    assert list(preview.changes) == ["default: update trunk voco: codecs",
                                     "default: update outbound route INTL: position"]
    assert list(preview.kept) == ["default: trunk extra"]
    assert api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="voco")).codecs == ["G729"]
    assert list(restore(api, backup).changes) == list(preview.changes)
    assert list(restore(api, backup).changes) == []
    assert api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="voco")).codecs == [
        "OPUS", "PCMU"]


def test_a_bad_document_changes_nothing(api: Api, empty: Api) -> None:
    populate(api)
    document = json.loads(export(api))
    document["tenants"]["default"]["trunks"][0]["codecs"] = ["G722"]
    with pytest.raises(grpc.RpcError) as caught:
        restore(api, json.dumps(document))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as no_password:
        restore(empty, export(api))  # register trunks cannot be created without one
    assert "needs a password" in (no_password.value.details() or "")
    assert "export it again with `trunkplane config export --with-secrets`" in (
        no_password.value.details() or "")
    assert "tenants.default.trunks[1].password: register trunk 'voco'" in (
        no_password.value.details() or "")
    assert empty.trunks.ListTrunks(trunk_pb2.ListTrunksRequest()).total_size == 0
    with pytest.raises(grpc.RpcError) as wrong:
        restore(empty, export(api, with_secrets=True), passphrase="not the passphrase")
    assert "does not open the sealed password" in (wrong.value.details() or "")
    with pytest.raises(grpc.RpcError) as garbage:
        restore(empty, "{not json")
    assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_import_with_a_request_id_applies_every_change_once(api: Api, empty: Api) -> None:
    """Into an empty store: every change applied (it was one of seven before), said to
    start a new history; the same request again changes nothing and says so."""
    populate(api)
    document = export(api, with_secrets=True)
    request = trunk_pb2.ImportConfigurationRequest(
        json=document, passphrase=PASSPHRASE,
        options=common_pb2.CommandOptions(reason="import backup.json", request_id="imp-7"))
    first = empty.trunks.ImportConfiguration(request)
    assert len(first.changes) >= 5 and list(first.new_history_tenants) == ["default"]
    assert export(empty) == export(api)  # every change applied, not only the first
    head = empty.plane.app.head()
    again = empty.trunks.ImportConfiguration(request)
    assert again.replayed and list(again.changes) == [] and empty.plane.app.head() == head
    started = audit_pb2_grpc.AuditServiceStub(empty.channel).ListChanges(
        audit_pb2.ListChangesRequest(filter=audit_pb2.ChangeFilter(
            event_type="HistoryStarted"))).changes
    assert len(started) == 1 and started[0].tenant == "default"
