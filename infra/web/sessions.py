"""Browser sessions: a random id in a cookie, the token and a CSRF secret kept here, in
the console's memory only (a restart signs everyone out, which is the safe direction)."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "__Host-trunkplane"  # __Host-: the browser keeps it only if Secure, Path=/, no Domain
IDLE_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Abilities:
    """Who signed in and what their role may do, as the API's WhoAmI answered at sign-in;
    the pages show only these controls, and the API still decides every call."""

    principal: str = ""
    role: str = ""
    methods: frozenset[str] = frozenset()

    def may(self, method: str) -> bool:
        return method in self.methods

    @property
    def edit(self) -> bool:
        return self.may("TrunkService.UpdateTrunk")

    @property
    def audit(self) -> bool:
        return self.may("AuditService.ListChanges")

    @property
    def operate(self) -> bool:
        return self.may("OpsService.GetProjectionStatus")

    @property
    def read(self) -> bool:
        return self.may("TrunkService.ListTrunks")


@dataclass
class Session:
    csrf: str
    token: str = ""
    tenant: str = "default"
    abilities: Abilities = field(default_factory=Abilities)
    flash: list[str] = field(default_factory=list)  # shown once, on the next page
    seen: float = field(default_factory=time.monotonic)

    @property
    def signed_in(self) -> bool:
        return bool(self.token)

    def take_flash(self) -> list[str]:
        shown, self.flash = self.flash, []
        return shown

    def csrf_matches(self, given: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), given.encode())


class Sessions:
    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self) -> tuple[str, Session]:
        """A fresh id each time: signing in never keeps the id the browser had before."""
        session_id, session = secrets.token_urlsafe(32), Session(secrets.token_urlsafe(32))
        with self._lock:
            self._expire()
            self._by_id[session_id] = session
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None or time.monotonic() - session.seen > self.idle_seconds:
                self._by_id.pop(session_id, None)
                return None
            session.seen = time.monotonic()
            return session

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._by_id.pop(session_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._by_id.items() if now - s.seen > self.idle_seconds]:
            del self._by_id[key]
