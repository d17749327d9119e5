"""What every page shares: the session behind the cookie, the CSRF check on every POST,
rendering with the signed-in person's abilities, and API refusals turned into pages."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from infra.web.api import Api, ApiError, Caller
from infra.web.sessions import COOKIE, Session, Sessions

HERE = Path(__file__).parent
# The console's own scripts and styles only: no inline script, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
HTTP_STATUS = {"PERMISSION_DENIED": 403, "NOT_FOUND": 404, "INVALID_ARGUMENT": 400,
               "FAILED_PRECONDITION": 409, "ABORTED": 409, "ALREADY_EXISTS": 409,
               "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}


@dataclass
class Visit:
    """One request of a signed-in person: their session and the API as them."""

    request: Request
    session: Session
    api: Caller

    @property
    def tenant(self) -> str:
        return self.session.tenant


Handler = Callable[[Visit], Awaitable[Response]]


class Console:
    def __init__(self, api: Api, sessions: Sessions | None = None) -> None:
        self.api = api
        self.sessions = sessions or Sessions()
        self.templates = Jinja2Templates(directory=HERE / "templates")

    def session_of(self, request: Request) -> tuple[str, Session | None]:
        session_id = request.cookies.get(COOKIE, "")
        return session_id, self.sessions.get(session_id) if session_id else None

    def render(self, request: Request, template: str, session: Session | None,
               status_code: int = 200, /, **context: Any) -> Response:
        response = self.templates.TemplateResponse(
            request, template,
            {"session": session, "flash": session.take_flash() if session else [], **context},
            status_code=status_code)
        response.headers.update(SECURITY_HEADERS)
        return response

    def refused(self, visit: Visit, error: ApiError) -> Response:
        if error.code == "UNAUTHENTICATED":  # the token was revoked or expired meanwhile
            return RedirectResponse("/signin", status_code=303)
        return self.render(visit.request, "error.html", visit.session,
                           HTTP_STATUS.get(error.code, 502), error=error)

    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A page for signed-in people: a POST without this session's CSRF token is
        refused before anything else happens."""

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            _, session = self.session_of(request)
            if session is None or not session.signed_in:
                return RedirectResponse("/signin", status_code=303)
            if request.method == "POST" and not await csrf_ok(request, session):
                return self.render(request, "error.html", session, 403, error=ApiError(
                    "CSRF", "this form is not from your session (reload the page and retry)"))
            visit = Visit(request, session, self.api.as_(session.token))
            try:
                return await handler(visit)
            except ApiError as error:
                return self.refused(visit, error)

        return endpoint


async def csrf_ok(request: Request, session: Session) -> bool:
    given = request.headers.get("x-csrf-token", "")
    if not given:
        form = await request.form()
        given = str(form.get("csrf", ""))
    return bool(given) and session.csrf_matches(given)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
