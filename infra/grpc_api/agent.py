"""AgentService: call admission over gRPC, on the agent that holds the tenant."""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from domain.errors import DomainError, NotFoundError, ValidationError
from infra.grpc_api.aio import on_loop
from infra.grpc_api.context import check_tenant
from infra.grpc_api.errors import abort
from sipagent.admission import INBOUND, OUTBOUND, Admission, Consideration, Lease, RefusedError
from trunkplane.v1 import agent_pb2, agent_pb2_grpc

DIRECTIONS = {agent_pb2.OUTBOUND: OUTBOUND, agent_pb2.INBOUND: INBOUND}
NAMES: dict[str, agent_pb2.Direction] = {OUTBOUND: agent_pb2.OUTBOUND, INBOUND: agent_pb2.INBOUND}


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):  # type: ignore[misc]
    def __init__(self, admission: Admission, default_tenant: str) -> None:
        self.admission = admission
        self.default_tenant = default_tenant

    @on_loop
    def AcquireChannel(self, request: agent_pb2.AcquireChannelRequest,
                       context: grpc.ServicerContext) -> agent_pb2.AcquireChannelResponse:
        tenant = request.tenant or self.default_tenant
        try:
            check_tenant(tenant)
        except DomainError as error:
            abort(context, error)
        direction = DIRECTIONS.get(request.direction)
        if direction is None:
            abort(context, ValidationError.single("direction", "must be OUTBOUND or INBOUND"))
        if direction == INBOUND and not (request.did and request.trunk):
            abort(context, ValidationError.single(
                "did", "an inbound call needs the DID and the trunk it arrived on"))
        if len(request.call_id) > 256:
            abort(context, ValidationError.single("call_id", "at most 256 characters"))
        try:
            grant = self.admission.acquire(tenant, direction, request.number,
                                           extension=request.extension, did=request.did,
                                           trunk=request.trunk, call_id=request.call_id)
        except RefusedError as refusal:
            refuse(context, refusal)
        except DomainError as error:
            abort(context, error)
        return agent_pb2.AcquireChannelResponse(lease=lease_pb(grant.lease), considered=[
            consideration_pb(c) for c in grant.considered])

    @on_loop
    def RenewChannel(self, request: agent_pb2.RenewChannelRequest,
                     context: grpc.ServicerContext) -> agent_pb2.Lease:
        try:
            return lease_pb(self.admission.renew(request.lease_id))
        except RefusedError as refusal:  # its tenant is being taken over: try again
            refuse(context, refusal)
        except DomainError as error:
            abort(context, error)

    @on_loop
    def ReleaseChannel(self, request: agent_pb2.ReleaseChannelRequest,
                       context: grpc.ServicerContext) -> agent_pb2.ReleaseChannelResponse:
        try:
            released = self.admission.release(request.lease_id)
        except NotFoundError as error:  # an id this agent cannot have issued
            abort(context, error)
        return agent_pb2.ReleaseChannelResponse(released=released)

    @on_loop
    def ReportCallFailure(self, request: agent_pb2.ReportCallFailureRequest,
                          context: grpc.ServicerContext
                          ) -> agent_pb2.ReportCallFailureResponse:
        if not 100 <= request.sip_code <= 699:
            abort(context, ValidationError.single("sip_code", "must be a SIP final response "
                                                  "code from 300 to 699"))
        try:
            grant, failed_over = self.admission.report_failure(request.lease_id,
                                                               request.sip_code)
        except RefusedError as refusal:
            refuse(context, refusal)
        except DomainError as error:
            abort(context, error)
        if grant is None:
            return agent_pb2.ReportCallFailureResponse(failed_over=failed_over)
        return agent_pb2.ReportCallFailureResponse(
            failed_over=failed_over, lease=lease_pb(grant.lease),
            considered=[consideration_pb(c) for c in grant.considered])


def lease_pb(lease: Lease) -> agent_pb2.Lease:
    message = agent_pb2.Lease(
        lease_id=lease.lease_id, trunk_id=lease.trunk_id, trunk_name=lease.trunk_name,
        direction=NAMES[lease.direction], dial_number=lease.dial_number,
        destination=lease.destination, route_id=lease.route_id, call_id=lease.call_id)
    message.expires_at.FromDatetime(lease.expires_at())
    return message


def consideration_pb(c: Consideration) -> agent_pb2.Consideration:
    return agent_pb2.Consideration(trunk_id=c.trunk_id, trunk_name=c.trunk_name,
                                   outcome=c.outcome, detail=c.detail)


def refuse(context: grpc.ServicerContext, refusal: RefusedError) -> NoReturn:
    """The refusal's code, its message, and an ErrorInfo naming each trunk considered."""
    info = error_details_pb2.ErrorInfo(
        reason=f"CHANNEL_{refusal.code}", domain="trunkplane.v1.AgentService",
        metadata={(c.trunk_name or c.trunk_id)[:64]: f"{c.outcome}: {c.detail}"[:200]
                  for c in refusal.considered[:20]})
    packed = any_pb2.Any()
    packed.Pack(info)
    status = status_pb2.Status(code=getattr(code_pb2, refusal.code),
                               message=str(refusal)[:2000], details=[packed])
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returned")  # pragma: no cover
