"""History pages: every change of a trunk or route with actor, time, reason, request id
and each field before and after; a trunk at a version or time, the difference between two;
the tenant's history with the auditors' filters, and its export as a download."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlencode

from google.protobuf import timestamp_pb2
from starlette.datastructures import QueryParams
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from infra.web.api import ApiError
from infra.web.console import Console, Visit
from trunkplane.v1 import audit_pb2, route_pb2, trunk_pb2

FILTERS = ("subject", "actor", "event_type", "since", "until")
EXPORT_TYPES = {"csv": "text/csv", "jsonl": "application/jsonl"}


def timestamp(text: str, name: str) -> timestamp_pb2.Timestamp:
    """A moment typed in a form, in UTC (`datetime-local` sends no zone)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError("INVALID_ARGUMENT", f"{name}: '{text}' is not a date and time "
                       "(YYYY-MM-DDTHH:MM)") from None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return stamp


def point(query: QueryParams, version: str, time: str) -> audit_pb2.PointInTime | None:
    if query.get(version, "").strip():
        number = query[version].strip()
        if not number.isdigit():
            raise ApiError("INVALID_ARGUMENT", f"{version}: '{number}' is not a version number")
        return audit_pb2.PointInTime(version=int(number))
    if query.get(time, "").strip():
        return audit_pb2.PointInTime(time=timestamp(query[time].strip(), time))
    return None


def change_filter(tenant: str, query: QueryParams) -> audit_pb2.ChangeFilter:
    found = audit_pb2.ChangeFilter(tenant=tenant, subject=query.get("subject", "").strip(),
                                   actor=query.get("actor", "").strip(),
                                   event_type=query.get("event_type", "").strip())
    if query.get("since", "").strip():
        found.start_time.CopyFrom(timestamp(query["since"].strip(), "since"))
    if query.get("until", "").strip():
        found.end_time.CopyFrom(timestamp(query["until"].strip(), "until"))
    return found


async def _trunk_name(visit: Visit, trunk_id: str) -> str:
    """A deleted trunk has no current settings: its history still has its id."""
    try:
        trunk = await visit.api.call(visit.api.trunks.GetTrunk,
                                     trunk_pb2.GetTrunkRequest(tenant=visit.tenant,
                                                               trunk=trunk_id))
    except ApiError as error:
        if error.code != "NOT_FOUND":
            raise
        return trunk_id
    return str(trunk.name)


async def _route_name(visit: Visit, kind: str, route_id: str) -> str:
    request = route_pb2.GetRouteRequest(tenant=visit.tenant, route=route_id)
    try:
        if kind == "outbound":
            return str((await visit.api.call(visit.api.routes.GetOutboundRoute, request)).name)
        found = await visit.api.call(visit.api.routes.GetInboundRoute, request)
    except ApiError as error:
        if error.code != "NOT_FOUND":
            raise
        return route_id
    return f"DID {found.did_pattern or 'any'}"


def routes(console: Console) -> list[Route]:
    async def trunk_history(visit: Visit) -> Response:
        trunk_id = visit.request.path_params["trunk"]
        answer = await visit.api.call(visit.api.trunks.GetTrunkHistory,
                                      trunk_pb2.GetTrunkHistoryRequest(tenant=visit.tenant,
                                                                       trunk=trunk_id))
        return console.render(visit.request, "history_subject.html", visit.session,
                              kind="trunk", subject_id=answer.trunk_id,
                              name=await _trunk_name(visit, answer.trunk_id),
                              entries=list(reversed(answer.entries)))

    async def route_history(visit: Visit) -> Response:
        kind, route_id = visit.request.path_params["kind"], visit.request.path_params["route"]
        answer = await visit.api.call(visit.api.routes.GetRouteHistory,
                                      route_pb2.GetRouteRequest(tenant=visit.tenant,
                                                                route=route_id))
        return console.render(visit.request, "history_subject.html", visit.session,
                              kind=f"{kind} route", subject_id=answer.route_id,
                              name=await _route_name(visit, kind, answer.route_id),
                              entries=list(reversed(answer.entries)))

    async def trunk_at(visit: Visit) -> Response:
        trunk_id = visit.request.path_params["trunk"]
        at = point(visit.request.query_params, "version", "time")
        if at is None:
            raise ApiError("INVALID_ARGUMENT", "give a version or a time")
        answer = await visit.api.call(visit.api.audit.GetTrunkAt, audit_pb2.GetTrunkAtRequest(
            tenant=visit.tenant, trunk=trunk_id, at=at))
        return console.render(visit.request, "trunk_at.html", visit.session,
                              trunk=answer.trunk, deleted=answer.deleted, subject_id=trunk_id,
                              query=visit.request.query_params)

    async def trunk_diff(visit: Visit) -> Response:
        trunk_id, query = visit.request.path_params["trunk"], visit.request.query_params
        start, end = point(query, "from_version", "from_time"), point(query, "to_version",
                                                                       "to_time")
        if start is None or end is None:
            raise ApiError("INVALID_ARGUMENT", "give both points: a version or a time each")
        answer = await visit.api.call(visit.api.audit.DiffTrunk, audit_pb2.DiffTrunkRequest(
            tenant=visit.tenant, trunk=trunk_id, to=end, **{"from": start}))
        return console.render(visit.request, "trunk_diff.html", visit.session,
                              diff=answer, subject_id=trunk_id,
                              name=await _trunk_name(visit, trunk_id))

    async def tenant_history(visit: Visit) -> Response:
        query = visit.request.query_params
        filters = {k: query.get(k, "") for k in FILTERS}
        answer = await visit.api.call(visit.api.audit.ListChanges, audit_pb2.ListChangesRequest(
            filter=change_filter(visit.tenant, query), page_size=100,
            page_token=query.get("page", "")))
        return console.render(visit.request, "history.html", visit.session,
                              changes=answer.changes, next_page=answer.next_page_token,
                              filters=filters,
                              filter_query=urlencode({k: v for k, v in filters.items() if v}))

    async def export(visit: Visit) -> Response:
        query = visit.request.query_params
        kind = query.get("format", "csv")
        if kind not in EXPORT_TYPES:
            raise ApiError("INVALID_ARGUMENT", f"format: csv or jsonl, not '{kind}'")
        request = audit_pb2.ExportChangesRequest(filter=change_filter(visit.tenant, query),
                                                 format=kind)
        chunks = visit.api.stream(visit.api.audit.ExportChanges, request)
        first = await anext(chunks, None)  # a refusal still becomes a page, not a file

        async def body() -> AsyncIterator[bytes]:
            if first is not None:
                yield bytes(first.data)
            async for chunk in chunks:
                yield bytes(chunk.data)

        name = f"trunkplane-{visit.tenant}-changes.{kind}"
        return StreamingResponse(body(), media_type=EXPORT_TYPES[kind], headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    page = console.page
    return [
        Route("/trunks/{trunk}/history", page(trunk_history), methods=["GET"]),
        Route("/trunks/{trunk}/at", page(trunk_at), methods=["GET"]),
        Route("/trunks/{trunk}/diff", page(trunk_diff), methods=["GET"]),
        Route("/routes/{kind:str}/{route}/history", page(route_history), methods=["GET"]),
        Route("/history", page(tenant_history), methods=["GET"]),
        Route("/history/export", page(export), methods=["GET"]),
    ]
