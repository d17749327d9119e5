"""Sign-in with a token (the same tokens and roles as gRPC) and sign-out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from infra.web.api import ApiError, Caller
from infra.web.console import Console, Visit, csrf_ok, see_other
from infra.web.sessions import COOKIE, Abilities
from trunkplane.v1 import ops_pb2


async def abilities(api: Caller) -> Abilities:
    me = await api.call(api.ops.WhoAmI, ops_pb2.WhoAmIRequest())
    return Abilities(me.principal, me.role, frozenset(me.methods))


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
        try:
            found = await abilities(console.api.as_(token))
        except ApiError as error:
            message = ("this token is unknown, expired or revoked"
                       if error.code == "UNAUTHENTICATED" else error.message)
            return console.render(request, "signin.html", session, 401,
                                  errors={"token": [message]}, tenant=tenant)
        if not found.read:
            return console.render(request, "signin.html", session, 403, tenant=tenant,
                                  errors={"token": [f"{found.principal} is {found.role}, a "
                                                    "role with no page in the console"]})
        console.sessions.drop(session_id)
        session_id, signed = console.sessions.new()
        signed.token, signed.tenant, signed.abilities = token, tenant, found
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
