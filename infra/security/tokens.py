"""Who is calling and what their role lets them do.

Principals prove themselves with a bearer token (stored only as a SHA-256 hash in the
tokens file, shown in clear once, when created) or, with mutual TLS, with a client
certificate whose subject common name is the principal. Each role is allowed a set of
RPCs; the table in the README is this policy, and a test holds them to each other."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import math
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from domain.values import parse_tenant

ROLES = ("admin", "operator", "auditor", "sre", "agent", "pbx")
TOKENS_FILE = "tokens.json"
RECHECK = 0.25  # seconds: how stale an open stream's view of the tokens file may be
MAX_KNOWN = 1024  # clear tokens whose check is remembered at once (see TokenStore)
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 (a file name, not a secret)

READ = {
    "TrunkService": {"GetTrunk", "ListTrunks", "GetTrunkHistory", "ListProviderTemplates",
                     "GetTrunkStatus", "ListTrunkStatuses", "WatchTrunkStatus", "ListCalls"},
    "RouteService": {"GetOutboundRoute", "ListOutboundRoutes", "GetInboundRoute",
                     "ListInboundRoutes", "GetRouteHistory", "ResolveOutbound",
                     "GetTenantPolicy", "GetPbxAccess"},
    "AlertService": {"ListChannels", "GetAlertRules", "ListNotifications",
                     "GetCapacityReport"},
}
WRITE = {
    "TrunkService": {"CreateTrunk", "UpdateTrunk", "DeleteTrunk", "ImportConfiguration"},
    "RouteService": {"CreateOutboundRoute", "UpdateOutboundRoute", "DeleteOutboundRoute",
                     "CreateInboundRoute", "UpdateInboundRoute", "DeleteInboundRoute",
                     "UpdateTenantPolicy", "UpdatePbxAccess"},
    "AlertService": {"PutChannel", "DeleteChannel", "UpdateAlertRules"},
}
EXPORT = {"TrunkService": {"ExportConfiguration"}}  # with secrets: admin only
AUDIT = {"AuditService": {"ListChanges", "ExportChanges", "GetTrunkAt", "DiffTrunk",
                          "GetRouteAt", "DiffRoute", "VerifyLog", "GetSignedHead",
                          "GetConsistencyProof", "GetInclusionProof"}}
OPS = {"OpsService": {"GetProjectionStatus", "RebuildProjection", "VerifyProjection"}}
LOCATE = {"OpsService": {"ListAgents"}}  # which agent holds a tenant
SELF = {"OpsService": {"WhoAmI"}}  # who the caller is and what its role may call
REPORT = {"RouteService": {"RecordFraudAlert"}}  # what agents tell the control plane
ADMISSION = {"AgentService": {"AcquireChannel", "RenewChannel", "ReleaseChannel",
                              "ReportCallFailure"}}
OPEN = {"/grpc.health.v1.Health/"}  # no credentials needed
REFLECTION = "/grpc.reflection."  # any valid token (and only with TRUNKPLANE_REFLECTION=on)

GRANTS: dict[str, list[dict[str, set[str]]]] = {
    "admin": [READ, WRITE, EXPORT, AUDIT, OPS, LOCATE, ADMISSION, REPORT, SELF],
    "operator": [READ, WRITE, EXPORT, LOCATE, SELF],
    "auditor": [READ, EXPORT, AUDIT, SELF],
    "sre": [READ, OPS, LOCATE, SELF],
    "agent": [REPORT, SELF],  # events, credentials and status travel through Kafka
    "pbx": [ADMISSION, LOCATE, SELF],  # the PBX asking an agent for channels
}


@functools.lru_cache(maxsize=4096)
def allowed(role: str, method: str) -> bool:
    """method: /trunkplane.v1.TrunkService/GetTrunk (the grants are fixed: remembered per
    role and method, as every call asks)"""
    if method.startswith(REFLECTION):
        return role in ROLES
    service, _, name = method.rpartition("/")
    service = service.rsplit(".", 1)[-1]
    return any(name in grant.get(service, set()) for grant in GRANTS.get(role, []))


def granted(role: str) -> list[str]:
    """Every RPC the role may call, as Service.Method."""
    return sorted({f"{service}.{name}" for grant in GRANTS.get(role, [])
                   for service, names in grant.items() for name in names})


def roles_for(method: str) -> list[str]:
    return [role for role in ROLES if allowed(role, method)]


@functools.lru_cache(maxsize=4096)
def is_open(method: str) -> bool:
    return any(method.startswith(prefix) for prefix in OPEN)


@dataclass
class TokenRecord:
    id: str
    principal: str
    role: str
    sha256: str
    created: str
    expires: str | None = None
    revoked: bool = False
    tenants: list[str] = field(default_factory=list)  # empty: every tenant

    def usable(self, now: datetime) -> bool:
        return self.ends() > now.timestamp()

    def ends(self) -> float:
        """When it stops being usable, in `time.time()` seconds (inf: never; 0: revoked).
        An expiry without a zone (a hand-edited file) is read as UTC, never local time."""
        if self.revoked:
            return 0.0
        if self.expires is None:
            return math.inf
        expires = datetime.fromisoformat(self.expires)
        return (expires if expires.tzinfo else expires.replace(tzinfo=UTC)).timestamp()


class TokenStore:
    """The tokens file: read again whenever it changes, so a revocation takes effect on
    the next call without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None  # the file's when last read
        self._checked = -RECHECK  # time.monotonic() of the last look for still_usable
        self._by_hash: dict[str, TokenRecord] = {}
        self._by_id: dict[str, TokenRecord] = {}
        # clear token -> (its record, when it ends): each call presents its token, and
        # hashing it and parsing its expiry every time cost more than the rest of the
        # check. Emptied whenever the file changes, so a revocation is seen at once.
        self._known: dict[str, tuple[TokenRecord, float]] = {}

    def records(self) -> list[TokenRecord]:
        if not self.path.exists():
            return []
        return [TokenRecord(**r) for r in json.loads(self.path.read_text())["tokens"]]

    def create(self, principal: str, role: str, days: int | None = None,
               certificate: bool = False, tenants: list[str] | None = None) -> tuple[str, str]:
        """Returns (id, the clear token, shown this once). With `certificate`, no token: the
        principal proves itself with a client certificate of that common name. `tenants`
        limits the token to those tenants."""
        if days is not None and days < 1:
            raise ValueError(f"--days must be 1 or more (got {days}); leave it out for a token "
                             "that does not expire")
        for tenant in tenants or []:
            parse_tenant(tenant)
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not '{role}'")
        if not principal or not principal.isprintable() or len(principal) > 128:
            raise ValueError("the principal must have 1 to 128 printable characters")
        token_id = secrets.token_hex(4)
        clear = f"tp_{token_id}_{secrets.token_urlsafe(32)}"
        now = datetime.now(UTC)
        record = TokenRecord(token_id, principal, role, "" if certificate else _hash(clear),
                             now.isoformat(),
                             (now + timedelta(days=days)).isoformat() if days else None,
                             tenants=sorted(set(tenants or [])))
        with self._changing():
            self._write([*self.records(), record])
        return token_id, "" if certificate else clear

    def revoke(self, token_id: str) -> bool:
        with self._changing():
            records = self.records()
            found = [r for r in records if r.id == token_id]
            for record in found:
                record.revoked = True
            self._write(records)
        return bool(found)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """One read-modify-write of the file at a time, across processes: a `tokens create`
        in one shell that read the file before a `tokens revoke` in another wrote it would
        otherwise write the revoked token back as usable."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def identify(self, clear: str) -> TokenRecord | None:
        """The usable token's record, else None. The file is looked at (a stat) on every
        call, as before: only the work on an unchanged file is remembered."""
        with self._lock:
            self._reload()
            known = self._known.get(clear)
            if known is None:
                record = self._by_hash.get(_hash(clear))
                if record is None:
                    return None
                if len(self._known) >= MAX_KNOWN:  # many distinct tokens: start again
                    self._known.clear()
                known = self._known[clear] = (record, record.ends())
        record, ends = known
        return record if time.time() < ends else None

    def still_usable(self, token_id: str) -> bool:
        """Whether a token found earlier is still neither revoked nor expired (asked by
        open streams, so they end when their token does). The file is looked at once per
        `RECHECK` whatever the number of streams asking: 1,000 watchers woken by one change
        each took the lock `identify` needs, and call admission queued behind them."""
        now = time.monotonic()
        if now - self._checked >= RECHECK:
            with self._lock:
                self._reload()
                self._checked = now
        record = self._by_id.get(token_id)  # a dict replaced whole by _reload: no lock
        return record is not None and record.usable(datetime.now(UTC))

    def _reload(self) -> None:
        try:  # each write replaces the file: a new inode even within one mtime tick;
            # ctime, which no tool can set back, catches a copy that keeps mtime and size
            found = self.path.stat()
            stamp: tuple[int, ...] | None = (found.st_dev, found.st_ino, found.st_mtime_ns,
                                             found.st_ctime_ns, found.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            records = self.records()
            self._by_hash = {r.sha256: r for r in records if r.sha256}
            self._by_id = {r.id: r for r in records}
            self._known = {}
            self._stamp = stamp

    def _write(self, records: list[TokenRecord]) -> None:
        """A new file of its own name (mode 0600), on disk, then renamed over the old."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp",
                                    dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump({"tokens": [asdict(r) for r in records]}, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(name, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise


def _hash(clear: str) -> str:
    return hashlib.sha256(clear.encode()).hexdigest()


def ensure_admin_token(data_dir: Path) -> Path | None:
    """On a first start: an admin token written for the local CLI (mode 0600). None when
    tokens exist already."""
    store = TokenStore(data_dir / TOKENS_FILE)
    if store.records():
        return None
    _, clear = store.create("admin", "admin")
    path = data_dir / ADMIN_TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(clear + "\n")
    return path


def table() -> list[list[Any]]:
    """The README's role table: one row per RPC, a column per role."""
    rows = []
    for grant in (READ, WRITE, EXPORT, AUDIT, OPS, LOCATE, ADMISSION, REPORT, SELF):
        for service, names in grant.items():
            for name in sorted(names):
                method = f"/trunkplane.v1.{service}/{name}"
                rows.append([f"{service}.{name}", *("yes" if allowed(r, method) else "-"
                                                    for r in ROLES)])
    return rows


class AuthError(Exception):
    def __init__(self, code: str, message: str, record: TokenRecord | None = None) -> None:
        self.code = code  # UNAUTHENTICATED | PERMISSION_DENIED
        self.record = record  # who was refused, when known (PERMISSION_DENIED)
        super().__init__(message)


class Authenticator:
    """Bearer tokens from the `authorization` metadata; with mutual TLS, the client
    certificate's common name, whose role a token record without a token names."""

    def __init__(self, tokens: TokenStore) -> None:
        self.tokens = tokens

    def still_valid(self, record: TokenRecord) -> bool:
        return self.tokens.still_usable(record.id)

    def identify(self, authorization: str, certificate_name: Callable[[], str],
                 method: str) -> TokenRecord:
        """certificate_name is asked only when no token is given (it costs a TLS lookup)."""
        record = self._who(authorization, certificate_name)
        if not allowed(record.role, method):
            needed = " or ".join(roles_for(method)) or "a role this release does not grant"
            raise AuthError("PERMISSION_DENIED",
                            f"{method} needs the role {needed}; {record.principal} is "
                            f"{record.role}", record)
        return record

    def _who(self, authorization: str, certificate: Callable[[], str]) -> TokenRecord:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token:
            record = self.tokens.identify(token.strip())
            if record is None:
                raise AuthError("UNAUTHENTICATED", "the token is unknown, expired or revoked")
            return record
        certificate_name = certificate()
        if certificate_name:
            for record in self.tokens.records():
                if (record.principal == certificate_name and not record.sha256
                        and record.usable(datetime.now(UTC))):
                    return record
            raise AuthError("UNAUTHENTICATED",
                            f"certificate {certificate_name} is not registered: "
                            f"trunkplane tokens create --principal {certificate_name} "
                            "--role ROLE --certificate")
        raise AuthError("UNAUTHENTICATED",
                        "no credentials: send `authorization: Bearer TOKEN` (or a client "
                        "certificate with mutual TLS)")
