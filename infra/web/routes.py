"""Route pages: outbound routes in order (dragged or moved to reorder), inbound routes by
DID, and the "which trunk would carry this number" box (`ResolveOutbound`)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.responses import Response
from starlette.routing import Route

from domain.dialplan import DialPattern
from infra.web.api import ApiError
from infra.web.console import Console, Visit, see_other
from infra.web.trunks import options
from trunkplane.v1 import route_pb2, trunk_pb2

STRATEGIES = ("failover", "spread", "weighted")


def pattern_text(pattern: route_pb2.DialPattern) -> str:
    return str(DialPattern(match=pattern.match, prefix=pattern.prefix, prepend=pattern.prepend))


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


OUTBOUND_FIELDS = ("name", "dial_patterns", "trunks", "strategy", "allowed_extensions",
                   "enabled", "description")


def _trunk(line: str) -> route_pb2.RouteTrunk:
    """`name` or `name:weight` (the weighted strategy's share), as the CLI takes them."""
    name, _, weight = line.rpartition(":")
    if name and weight.isdigit():
        return route_pb2.RouteTrunk(trunk_id=name.strip(), weight=int(weight))
    return route_pb2.RouteTrunk(trunk_id=line)


def outbound_from(posted: FormData) -> route_pb2.OutboundRoute:
    route = route_pb2.OutboundRoute(
        name=str(posted.get("name", "")).strip(),
        strategy=str(posted.get("strategy", "failover")),
        allowed_extensions=_lines(str(posted.get("allowed_extensions", ""))),
        enabled=posted.get("enabled") == "on",
        description=str(posted.get("description", "")).strip())
    for text in _lines(str(posted.get("dial_patterns", ""))):
        parsed = DialPattern.parse(text)
        route.dial_patterns.add(match=parsed.match, prefix=parsed.prefix,
                                prepend=parsed.prepend)
    route.trunks.extend(_trunk(line) for line in _lines(str(posted.get("trunks", ""))))
    return route


def shown(posted: FormData) -> dict[str, str]:
    """Posted values to show again; an unticked box is absent from a form, not "off"."""
    return {**{k: str(v) for k, v in posted.items()}, "enabled": str(posted.get("enabled", ""))}


def form_of(route: route_pb2.OutboundRoute) -> dict[str, str]:
    weighted = route.strategy == "weighted"
    return {
        "name": route.name, "strategy": route.strategy or "failover",
        "dial_patterns": "\n".join(pattern_text(p) for p in route.dial_patterns),
        "trunks": "\n".join((t.trunk_name or t.trunk_id) + (f":{t.weight}" if weighted else "")
                            for t in route.trunks),
        "allowed_extensions": "\n".join(route.allowed_extensions),
        "enabled": "on" if route.enabled else "", "description": route.description}


def _errors(error: ApiError) -> dict[str, list[str]]:
    if error.code not in ("INVALID_ARGUMENT", "ALREADY_EXISTS", "NOT_FOUND"):
        raise error
    found: dict[str, list[str]] = {}
    for path, messages in (error.fields or {"": [error.message]}).items():
        name = path.removeprefix("route.").partition("[")[0].partition(".")[0]
        found.setdefault(name, []).extend(messages)
    return found


def routes(console: Console) -> list[Route]:
    async def page_of(visit: Visit, status_code: int = 200, **context: Any) -> Response:
        api, tenant = visit.api, visit.tenant
        listing = route_pb2.ListRoutesRequest(tenant=tenant, page_size=500)
        outbound = await api.call(api.routes.ListOutboundRoutes, listing)
        inbound = await api.call(api.routes.ListInboundRoutes, listing)
        trunks = await api.call(api.trunks.ListTrunks,
                                trunk_pb2.ListTrunksRequest(tenant=tenant, page_size=500))
        for key in ("errors", "inbound_errors", "posted"):
            context.setdefault(key, {})
        return console.render(visit.request, "routes.html", visit.session, status_code,
                              outbound=outbound.routes, inbound=inbound.routes,
                              trunk_names={t.id: t.name for t in trunks.trunks},
                              pattern_text=pattern_text, strategies=STRATEGIES, **context)

    async def show(visit: Visit) -> Response:
        return await page_of(visit)

    async def create_outbound(visit: Visit) -> Response:
        posted = await visit.request.form()
        route = outbound_from(posted)
        try:
            await visit.api.call(visit.api.routes.CreateOutboundRoute,
                                 route_pb2.CreateOutboundRouteRequest(
                                     tenant=visit.tenant, route=route,
                                     options=options(visit, posted)))
        except ApiError as error:
            return await page_of(visit, 400, errors=_errors(error), posted=shown(posted))
        visit.session.flash.append(f"Outbound route {route.name} created.")
        return see_other("/routes")

    async def edit(visit: Visit) -> Response:
        route = await visit.api.call(visit.api.routes.GetOutboundRoute, route_pb2.GetRouteRequest(
            tenant=visit.tenant, route=visit.request.path_params["route"]))
        return console.render(visit.request, "route_edit.html", visit.session, route=route,
                              etag=route.etag, posted=form_of(route), errors={},
                              strategies=STRATEGIES)

    async def update(visit: Visit) -> Response:
        posted = await visit.request.form()
        route_id, etag = visit.request.path_params["route"], str(posted.get("etag", ""))
        try:
            done = await visit.api.call(
                visit.api.routes.UpdateOutboundRoute, route_pb2.UpdateOutboundRouteRequest(
                    tenant=visit.tenant, route=route_id, changes=outbound_from(posted),
                    update_mask={"paths": OUTBOUND_FIELDS}, etag=etag,
                    options=options(visit, posted)))
        except ApiError as error:
            errors = ({"": ["Someone changed this route after you opened it, so nothing was "
                            "saved. Open it again to see their change."]}
                      if error.code == "ABORTED" else _errors(error))
            route = await visit.api.call(visit.api.routes.GetOutboundRoute,
                                         route_pb2.GetRouteRequest(tenant=visit.tenant,
                                                                   route=route_id))
            return console.render(visit.request, "route_edit.html", visit.session, 409,
                                  route=route, etag=etag, posted=shown(posted), errors=errors,
                                  strategies=STRATEGIES)
        visit.session.flash.append(f"Outbound route {done.route.name} saved.")
        return see_other("/routes")

    async def move(visit: Visit) -> Response:
        """The new 1-based place of a route, from a drag or the move buttons."""
        posted = await visit.request.form()
        position = str(posted.get("position", ""))
        if not position.isdigit():
            raise ApiError("INVALID_ARGUMENT", f"position: '{position}' is not a number")
        await visit.api.call(visit.api.routes.UpdateOutboundRoute,
                             route_pb2.UpdateOutboundRouteRequest(
                                 tenant=visit.tenant, route=visit.request.path_params["route"],
                                 changes=route_pb2.OutboundRoute(position=int(position)),
                                 update_mask={"paths": ["position"]},
                                 options=options(visit, posted)))
        return see_other("/routes")

    async def delete(visit: Visit) -> Response:
        posted = await visit.request.form()
        kind = visit.request.path_params["kind"]
        method = (visit.api.routes.DeleteOutboundRoute if kind == "outbound"
                  else visit.api.routes.DeleteInboundRoute)
        await visit.api.call(method, route_pb2.DeleteRouteRequest(
            tenant=visit.tenant, route=visit.request.path_params["route"],
            etag=str(posted.get("etag", "")), options=options(visit, posted)))
        visit.session.flash.append(f"The {kind} route was deleted.")
        return see_other("/routes")

    async def create_inbound(visit: Visit) -> Response:
        posted = await visit.request.form()
        route = route_pb2.InboundRoute()
        for key in ("did_pattern", "caller_id_pattern", "trunk_id", "destination",
                    "description"):
            setattr(route, key, str(posted.get(key, "")).strip())
        try:
            await visit.api.call(visit.api.routes.CreateInboundRoute,
                                 route_pb2.CreateInboundRouteRequest(
                                     tenant=visit.tenant, route=route,
                                     options=options(visit, posted)))
        except ApiError as error:
            return await page_of(visit, 400, inbound_errors=_errors(error),
                                 posted=shown(posted))
        visit.session.flash.append(f"Inbound route for {route.did_pattern or 'any DID'} "
                                   "created.")
        return see_other("/routes")

    async def resolve(visit: Visit) -> Response:
        query = visit.request.query_params
        number, extension = query.get("number", "").strip(), query.get("extension", "").strip()
        try:
            answer: Any = await visit.api.call(
                visit.api.routes.ResolveOutbound, route_pb2.ResolveOutboundRequest(
                    tenant=visit.tenant, number=number, extension=extension))
            refusal = None
        except ApiError as error:
            if error.code in ("UNAUTHENTICATED", "UNAVAILABLE"):
                raise
            answer, refusal = None, error
        context = {"answer": answer, "refusal": refusal, "number": number,
                   "extension": extension, "pattern_text": pattern_text}
        if visit.request.headers.get("hx-request"):
            return console.render(visit.request, "resolve_result.html", visit.session,
                                  **context)
        return await page_of(visit, resolved=context)

    page = console.page
    return [
        Route("/routes", page(show), methods=["GET"]),
        Route("/routes/resolve", page(resolve), methods=["GET"]),
        Route("/routes/outbound", page(create_outbound), methods=["POST"]),
        Route("/routes/outbound/{route}/move", page(move), methods=["POST"]),
        Route("/routes/outbound/{route}/edit", page(edit), methods=["GET"]),
        Route("/routes/outbound/{route}/edit", page(update), methods=["POST"]),
        Route("/routes/inbound", page(create_inbound), methods=["POST"]),
        Route("/routes/{kind:str}/{route}/delete", page(delete), methods=["POST"]),
    ]
