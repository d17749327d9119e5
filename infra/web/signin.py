"""Sign-in with a token (the same tokens and roles as gRPC) and sign-out."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from infra.web.api import ApiError, Caller
from infra.web.console import Console, Visit, csrf_ok, see_other
from infra.web.sessions import COOKIE, Abilities
from trunkplane.v1 import audit_pb2, ops_pb2, trunk_pb2


async def _may(probe: Awaitable[Any]) -> bool:
    """A probe the API refuses with PERMISSION_DENIED when the role lacks the right; any
    other answer (including NOT_FOUND for the empty name probed) means it has it."""
    try:
        await probe
    except ApiError as error:
        return error.code != "PERMISSION_DENIED"
    return True


async def abilities(api: Caller, tenant: str) -> Abilities:
    """Asks the API what this token may do; nothing is changed by any of these calls."""
    return Abilities(
        edit=await _may(api.call(api.trunks.UpdateTrunk,
                                 trunk_pb2.UpdateTrunkRequest(tenant=tenant, trunk=""))),
        audit=await _may(api.call(api.audit.ListChanges, audit_pb2.ListChangesRequest(
            filter=audit_pb2.ChangeFilter(tenant=tenant, min_position=-1), page_size=1))),
        operate=await _may(api.call(api.ops.GetProjectionStatus,
                                    ops_pb2.GetProjectionStatusRequest())))


def set_cookie(response: Response, session_id: str) -> None:
    response.set_cookie(COOKIE, session_id, httponly=True, secure=True, samesite="strict",
                        path="/")


def routes(console: Console) -> list[Route]:
    async def form(request: Request) -> Response:
        session_id, session = console.session_of(request)
        if session is not None and session.signed_in:
            return see_other("/trunks")
        if session is None:  # an anonymous session only to carry the sign-in form's CSRF
            session_id, session = console.sessions.new()
        response = console.render(request, "signin.html", session, errors={})
        set_cookie(response, session_id)
        return response

    async def sign_in(request: Request) -> Response:
        session_id, session = console.session_of(request)
        if session is None or not await csrf_ok(request, session):
            return see_other("/signin")
        posted = await request.form()
        token = str(posted.get("token", "")).strip()
        tenant = str(posted.get("tenant", "")).strip() or "default"
        api = console.api.as_(token)
        try:
            await api.call(api.trunks.ListTrunks,
                           trunk_pb2.ListTrunksRequest(tenant=tenant, page_size=1,
                                                       min_position=-1))
        except ApiError as error:
            message = ("this token is unknown, expired or revoked"
                       if error.code == "UNAUTHENTICATED" else error.message)
            return console.render(request, "signin.html", session, 401,
                                  errors={"token": [message]}, tenant=tenant)
        console.sessions.drop(session_id)
        session_id, signed = console.sessions.new()
        signed.token, signed.tenant = token, tenant
        signed.abilities = await abilities(api, tenant)
        response = see_other("/trunks")
        set_cookie(response, session_id)
        return response

    async def sign_out(visit: Visit) -> Response:
        session_id, _ = console.session_of(visit.request)
        console.sessions.drop(session_id)
        response = see_other("/signin")
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return response

    return [Route("/signin", form, methods=["GET"]),
            Route("/signin", sign_in, methods=["POST"]),
            Route("/signout", console.page(sign_out), methods=["POST"])]
