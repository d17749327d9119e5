"""RouteService: outbound and inbound routes, their history, and resolution."""

from __future__ import annotations

from typing import Any

import grpc

from domain import commands
from domain.catalog import INBOUND, OUTBOUND
from domain.errors import NotFoundError
from domain.routes import OutboundRoute
from infra.grpc_api.convert import (
    command_meta,
    guard_settings,
    history_message,
    hours_settings,
    inbound_message,
    inbound_settings,
    masked_patch,
    outbound_message,
    outbound_settings,
    pbx_message,
    pbx_settings,
    policy_message,
)
from infra.grpc_api.servicer_base import ServicerBase
from projections.state import doc_of
from trunkplane.v1 import common_pb2, route_pb2, route_pb2_grpc

Ctx = grpc.ServicerContext
POSITION = frozenset({"position"})


class RouteServicer(ServicerBase, route_pb2_grpc.RouteServiceServicer):  # type: ignore[misc]
    def CreateOutboundRoute(self, request: route_pb2.CreateOutboundRouteRequest,
                            context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        meta = command_meta(request, request.options)
        raw = outbound_settings(request.route)
        position = request.route.position or None
        done = self.run(context, lambda uow: commands.create_outbound_route(
            uow, tenant, raw, position, meta), "route")
        return route_pb2.OutboundRouteResponse(
            route=self._outbound(tenant, done.unwrap().aggregate), position=done.position)

    def GetOutboundRoute(self, request: route_pb2.GetRouteRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        self.ready(context, request.min_position)
        route = self.read(context, lambda: self.view.get(tenant, OUTBOUND, request.route))
        return self._outbound_read(tenant, [route])[0]

    def ListOutboundRoutes(self, request: route_pb2.ListRoutesRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        position = self.ready(context, request.min_position)
        page = self.read(context, lambda: self.view.outbound_routes(
            tenant, request.page_size, request.page_token))
        return route_pb2.ListOutboundRoutesResponse(
            routes=self._outbound_read(tenant, page.items),
            next_page_token=page.next_page_token, total_size=page.total_size,
            view_position=position)

    def UpdateOutboundRoute(self, request: route_pb2.UpdateOutboundRouteRequest,
                            context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        meta = command_meta(request, request.options)
        paths = list(request.update_mask.paths)
        patch = self.read(context, lambda: masked_patch(
            request.changes, outbound_settings(request.changes), paths, POSITION))
        moves = "position" in paths or (not paths and request.changes.position)
        position = request.changes.position if moves else None
        done = self.run(context, lambda uow: commands.update_outbound_route(
            uow, tenant, request.route, patch, position, request.etag, meta), "changes")
        return route_pb2.OutboundRouteResponse(
            route=self._outbound(tenant, done.unwrap().aggregate), position=done.position)

    def GetTenantPolicy(self, request: route_pb2.GetTenantPolicyRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        catalog = self.bus.app.catalog(tenant)
        return policy_message(tenant, catalog.policy if catalog is not None else {})

    def UpdateTenantPolicy(self, request: route_pb2.UpdateTenantPolicyRequest,
                           context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        meta = command_meta(request, request.options)
        paths = list(request.update_mask.paths)
        full = {"guard": guard_settings(request.policy.guard),
                "business_hours": hours_settings(request.policy)}
        patch = self.read(context, lambda: masked_patch(request.policy, full, paths,
                                                        frozenset({"tenant"})))
        done = self.run(context, lambda uow: commands.update_tenant_policy(
            uow, tenant, patch, meta))
        return policy_message(tenant, done.unwrap())

    def RecordFraudAlert(self, request: route_pb2.RecordFraudAlertRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        if self.bus.app.catalog(tenant) is None:  # an agent holds only tenants that exist
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"tenant '{tenant}' does not exist: alerts are recorded only in "
                          "tenants an agent holds")
        meta = command_meta(request, common_pb2.CommandOptions())
        done = self.run(context, lambda uow: commands.record_fraud_alert(
            uow, tenant, request.kind, request.detail, request.extension, request.route_id,
            meta))
        return route_pb2.RecordFraudAlertResponse(position=done.position)

    def GetPbxAccess(self, request: route_pb2.GetPbxAccessRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        self.ready(context, request.min_position)
        return pbx_message(tenant, self.read(context, lambda: self.view.pbx(tenant)))

    def UpdatePbxAccess(self, request: route_pb2.UpdatePbxAccessRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        meta = command_meta(request, request.options)
        patch = self.read(context, lambda: masked_patch(
            request.pbx, pbx_settings(request.pbx), list(request.update_mask.paths)))
        done = self.run(context, lambda uow: commands.update_pbx(
            uow, tenant, patch, request.etag, meta))
        return route_pb2.PbxAccessResponse(
            pbx=pbx_message(tenant, doc_of(done.unwrap().aggregate)), position=done.position)

    def DeleteOutboundRoute(self, request: route_pb2.DeleteRouteRequest, context: Ctx) -> Any:
        done = self._delete(request, context, OUTBOUND)
        return route_pb2.OutboundRouteResponse(
            route=self._outbound(request.tenant, done.unwrap().aggregate),
            position=done.position)

    def CreateInboundRoute(self, request: route_pb2.CreateInboundRouteRequest,
                           context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        meta = command_meta(request, request.options)
        raw = inbound_settings(request.route)
        done = self.run(context, lambda uow: commands.create_inbound_route(
            uow, tenant, raw, meta), "route")
        return route_pb2.InboundRouteResponse(
            route=inbound_message(doc_of(done.unwrap().aggregate)), position=done.position)

    def GetInboundRoute(self, request: route_pb2.GetRouteRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        self.ready(context, request.min_position)
        return inbound_message(self.read(context, lambda: self.view.get(
            tenant, INBOUND, request.route)))

    def ListInboundRoutes(self, request: route_pb2.ListRoutesRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        position = self.ready(context, request.min_position)
        page = self.read(context, lambda: self.view.inbound_routes(
            tenant, request.page_size, request.page_token))
        return route_pb2.ListInboundRoutesResponse(
            routes=[inbound_message(r) for r in page.items],
            next_page_token=page.next_page_token, total_size=page.total_size,
            view_position=position)

    def UpdateInboundRoute(self, request: route_pb2.UpdateInboundRouteRequest,
                           context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        meta = command_meta(request, request.options)
        patch = self.read(context, lambda: masked_patch(
            request.changes, inbound_settings(request.changes),
            list(request.update_mask.paths)))
        done = self.run(context, lambda uow: commands.update_inbound_route(
            uow, tenant, request.route, patch, request.etag, meta), "changes")
        return route_pb2.InboundRouteResponse(
            route=inbound_message(doc_of(done.unwrap().aggregate)), position=done.position)

    def DeleteInboundRoute(self, request: route_pb2.DeleteRouteRequest, context: Ctx) -> Any:
        done = self._delete(request, context, INBOUND)
        return route_pb2.InboundRouteResponse(
            route=inbound_message(doc_of(done.unwrap().aggregate)), position=done.position)

    def GetRouteHistory(self, request: route_pb2.GetRouteRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        position = self.ready(context, request.min_position)

        def find() -> tuple[str, list[Any]]:
            try:
                return self.changes_of(tenant, OUTBOUND, request.route)
            except NotFoundError:
                return self.changes_of(tenant, INBOUND, request.route)

        route_id, rows = self.read(context, find)
        return route_pb2.GetRouteHistoryResponse(
            route_id=route_id, entries=[history_message(r) for r in rows],
            view_position=position)

    def ResolveOutbound(self, request: route_pb2.ResolveOutboundRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        position = self.ready(context, request.min_position)
        found = self.read(context, lambda: self.view.resolve(
            tenant, request.number, request.extension))
        return route_pb2.ResolveOutboundResponse(
            route_id=found.route_id, route_name=found.route_name, strategy=found.strategy,
            matched_pattern=route_pb2.DialPattern(
                match=found.pattern.match, prefix=found.pattern.prefix,
                prepend=found.pattern.prepend),
            number=found.number,
            candidates=[route_pb2.Candidate(trunk_id=c.trunk_id, trunk_name=c.trunk_name,
                                            weight=c.weight) for c in found.candidates],
            skipped=[str(s) for s in found.skipped], view_position=position)

    def _delete(self, request: route_pb2.DeleteRouteRequest, context: Ctx, kind: str) -> Any:
        tenant = self.tenant(context, request.tenant)
        meta = command_meta(request, request.options)
        return self.run(context, lambda uow: commands.delete_route(
            uow, tenant, kind, request.route, request.etag, meta))

    def _outbound(self, tenant: str, route: OutboundRoute) -> route_pb2.OutboundRoute:
        """A route a command just wrote: its place and trunk names from the write side."""
        catalog = self.bus.app.catalog(tenant or self.default_tenant)
        order = catalog.outbound_order if catalog else []
        names = {k: e["name"] for k, e in catalog.entries["trunk"].items()} if catalog else {}
        position = order.index(str(route.id)) + 1 if str(route.id) in order else 0
        return outbound_message(doc_of(route), position, names)

    def _outbound_read(self, tenant: str, docs: list[Any]) -> list[route_pb2.OutboundRoute]:
        order = self.view.outbound_order(tenant)
        names = self.view.trunk_names(tenant)
        return [outbound_message(d, order.index(d["id"]) + 1 if d["id"] in order else 0, names)
                for d in docs]
