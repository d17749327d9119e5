"""Request builders and status readers shared by the integration tests."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.conftest import Api
from trunkplane.v1 import common_pb2, route_pb2, trunk_pb2

PASSWORD = "Very-Secret-Password-42"
ALICE = "alice@example.com"


def register_trunk(name: str, **fields: Any) -> trunk_pb2.Trunk:
    values: dict[str, Any] = {
        "name": name, "type": "register", "host": "sip.example.com", "username": "1001",
        "password": PASSWORD, "codecs": ["PCMU", "PCMA"],
    }
    return trunk_pb2.Trunk(**{**values, **fields})


def create_trunk(api: Api, name: str, reason: str = "", request_id: str = "",
                 **fields: Any) -> trunk_pb2.TrunkResponse:
    request = trunk_pb2.CreateTrunkRequest(
        trunk=register_trunk(name, **fields),
        options=common_pb2.CommandOptions(reason=reason, request_id=request_id))
    response: trunk_pb2.TrunkResponse = api.trunks.CreateTrunk(request, metadata=api.as_(ALICE))
    return response


def update_trunk(api: Api, trunk: str, changes: trunk_pb2.Trunk, paths: list[str],
                 etag: str = "", reason: str = "") -> trunk_pb2.TrunkResponse:
    request = trunk_pb2.UpdateTrunkRequest(
        trunk=trunk, changes=changes, etag=etag,
        options=common_pb2.CommandOptions(reason=reason))
    request.update_mask.paths.extend(paths)
    response: trunk_pb2.TrunkResponse = api.trunks.UpdateTrunk(request, metadata=api.as_(ALICE))
    return response


def create_route(api: Api, name: str, trunks: list[str], patterns: tuple[str, ...] = (
        "NXXNXXXXXX",), **fields: Any) -> route_pb2.OutboundRouteResponse:
    route = route_pb2.OutboundRoute(
        name=name, dial_patterns=[route_pb2.DialPattern(match=p) for p in patterns],
        trunks=[route_pb2.RouteTrunk(trunk_id=t) for t in trunks], **fields)
    response: route_pb2.OutboundRouteResponse = api.routes.CreateOutboundRoute(
        route_pb2.CreateOutboundRouteRequest(route=route), metadata=api.as_(ALICE))
    return response


def violations(error: grpc.RpcError) -> dict[str, str]:
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found |= {v.field: v.description for v in bad.field_violations}
    return found


def precondition_subjects(error: grpc.RpcError) -> list[str]:
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None
    subjects: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            subjects += [v.subject for v in failure.violations]
    return subjects
