"""Trunk pages: the list with live status, add from a provider template, edit with the
etag, enable/disable, delete."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from infra.web import forms
from infra.web.api import ApiError
from infra.web.console import SECURITY_HEADERS, Console, Visit, see_other
from trunkplane.v1 import common_pb2, trunk_pb2

PAGE = 500


def options(visit: Visit, posted: Any) -> common_pb2.CommandOptions:
    return common_pb2.CommandOptions(reason=str(posted.get("reason", "")).strip())


async def _templates(visit: Visit) -> list[Any]:
    answer = await visit.api.call(visit.api.trunks.ListProviderTemplates,
                                  trunk_pb2.ListProviderTemplatesRequest())
    return list(answer.templates)


def status_cell(console: Console, status: Any) -> str:
    return console.templates.get_template("status_cell.html").render(status=status)


def routes(console: Console) -> list[Route]:
    async def listing(visit: Visit) -> Response:
        api, tenant = visit.api, visit.tenant
        trunks = await api.call(api.trunks.ListTrunks,
                                trunk_pb2.ListTrunksRequest(tenant=tenant, page_size=PAGE))
        statuses = await api.call(api.trunks.ListTrunkStatuses,
                                  trunk_pb2.ListTrunksRequest(tenant=tenant, page_size=PAGE))
        by_id = {s.trunk_id: s for s in statuses.statuses}
        return console.render(visit.request, "trunks.html", visit.session,
                              trunks=trunks.trunks, statuses=by_id, total=trunks.total_size)

    async def status_events(visit: Visit) -> Response:
        """Server-sent events from WatchTrunkStatus: each change as the cell's new HTML; a
        reconnecting browser sends Last-Event-ID and misses nothing."""
        since = visit.request.headers.get("last-event-id", "0")
        request = trunk_pb2.WatchTrunkStatusRequest(
            tenant=visit.tenant, since_position=int(since) if since.isdigit() else 0)

        async def events() -> AsyncIterator[str]:
            try:
                async for change in visit.api.stream(visit.api.trunks.WatchTrunkStatus,
                                                     request):
                    data = {"trunk_id": change.status.trunk_id,
                            "html": status_cell(console, change.status)}
                    yield f"id: {change.position}\nevent: status\ndata: {json.dumps(data)}\n\n"
            except ApiError as error:
                yield f"event: failed\ndata: {json.dumps(str(error))}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"})

    async def new(visit: Visit) -> Response:
        templates = await _templates(visit)
        chosen = next((t for t in templates
                       if t.id == visit.request.query_params.get("template")), None)
        form = forms.from_trunk(chosen.defaults) if chosen else None
        return console.render(visit.request, "trunk_new.html", visit.session,
                              templates=templates, chosen=chosen, form=form, f=forms)

    async def create(visit: Visit) -> Response:
        posted = await visit.request.form()
        form = forms.from_post(posted)
        trunk = forms.to_trunk(form)
        template = str(posted.get("template", ""))
        if not form.errors:
            try:
                done = await visit.api.call(visit.api.trunks.CreateTrunk,
                                            trunk_pb2.CreateTrunkRequest(
                                                tenant=visit.tenant, trunk=trunk,
                                                template=template,
                                                options=options(visit, posted)))
            except ApiError as error:
                if error.code not in ("INVALID_ARGUMENT", "ALREADY_EXISTS"):
                    raise
                form.take_violations(error.fields or {"name": [error.message]})
            else:
                visit.session.flash += [f"Trunk {done.trunk.name} created.",
                                        *(f"Warning: {w}" for w in done.warnings)]
                return see_other("/trunks")
        chosen = next((t for t in await _templates(visit) if t.id == template), None)
        return console.render(visit.request, "trunk_new.html", visit.session, 400,
                              templates=[], chosen=chosen, form=form, f=forms)

    async def edit(visit: Visit) -> Response:
        trunk = await visit.api.call(visit.api.trunks.GetTrunk, trunk_pb2.GetTrunkRequest(
            tenant=visit.tenant, trunk=visit.request.path_params["trunk"]))
        return console.render(visit.request, "trunk_edit.html", visit.session, trunk=trunk,
                              etag=trunk.etag, form=forms.from_trunk(trunk), f=forms)

    async def update(visit: Visit) -> Response:
        posted = await visit.request.form()
        form, etag = forms.from_post(posted), str(posted.get("etag", ""))
        changes = forms.to_trunk(form)
        trunk_id = visit.request.path_params["trunk"]
        if not form.errors:
            try:
                await visit.api.call(visit.api.trunks.UpdateTrunk, trunk_pb2.UpdateTrunkRequest(
                    tenant=visit.tenant, trunk=trunk_id, changes=changes, etag=etag,
                    update_mask={"paths": forms.update_mask(form)},
                    options=options(visit, posted)))
            except ApiError as error:
                if error.code == "ABORTED":
                    form.error("", "Someone changed this trunk after you opened it, so "
                                   "nothing was saved. Open it again to see their change.")
                elif error.code in ("INVALID_ARGUMENT", "ALREADY_EXISTS"):
                    form.take_violations(error.fields or {"name": [error.message]})
                else:
                    raise
            else:
                visit.session.flash.append(f"Trunk {form.values.get('name')} saved.")
                return see_other("/trunks")
        trunk = await visit.api.call(visit.api.trunks.GetTrunk, trunk_pb2.GetTrunkRequest(
            tenant=visit.tenant, trunk=trunk_id))
        return console.render(visit.request, "trunk_edit.html", visit.session, 409,
                              trunk=trunk, etag=etag, form=form, f=forms)

    async def switch(visit: Visit) -> Response:
        posted = await visit.request.form()
        enabled = visit.request.url.path.endswith("/enable")
        trunk_id = visit.request.path_params["trunk"]
        try:
            done = await visit.api.call(visit.api.trunks.UpdateTrunk, trunk_pb2.UpdateTrunkRequest(
                tenant=visit.tenant, trunk=trunk_id, etag=str(posted.get("etag", "")),
                changes=trunk_pb2.Trunk(enabled=enabled), update_mask={"paths": ["enabled"]},
                options=options(visit, posted)))
        except ApiError as error:
            if error.code != "ABORTED":
                raise
            visit.session.flash.append("Not changed: someone changed the trunk meanwhile; "
                                       "here it is as it is now.")
        else:
            visit.session.flash.append(
                f"Trunk {done.trunk.name} {'enabled' if enabled else 'disabled'}.")
        return see_other("/trunks")

    async def delete(visit: Visit) -> Response:
        posted = await visit.request.form()
        try:
            done = await visit.api.call(visit.api.trunks.DeleteTrunk, trunk_pb2.DeleteTrunkRequest(
                tenant=visit.tenant, trunk=visit.request.path_params["trunk"],
                etag=str(posted.get("etag", "")), options=options(visit, posted)))
        except ApiError as error:
            if error.code not in ("FAILED_PRECONDITION", "ABORTED"):
                raise
            missing = [s for s in error.subjects if s not in error.message]
            used_by = f" (used by {', '.join(missing)})" if missing else ""
            visit.session.flash.append(f"Not deleted: {error.message}{used_by}")
        else:
            visit.session.flash.append(f"Trunk {done.trunk.name} deleted.")
        return see_other("/trunks")

    page = console.page
    return [
        Route("/trunks", page(listing), methods=["GET"]),
        Route("/trunks/status/events", page(status_events), methods=["GET"]),
        Route("/trunks/new", page(new), methods=["GET"]),
        Route("/trunks/new", page(create), methods=["POST"]),
        Route("/trunks/{trunk}/edit", page(edit), methods=["GET"]),
        Route("/trunks/{trunk}/edit", page(update), methods=["POST"]),
        Route("/trunks/{trunk}/enable", page(switch), methods=["POST"]),
        Route("/trunks/{trunk}/disable", page(switch), methods=["POST"]),
        Route("/trunks/{trunk}/delete", page(delete), methods=["POST"]),
    ]
