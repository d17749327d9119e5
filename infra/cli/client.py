"""The CLI's connection to a trunkplane server, and how it reports a failed call."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from infra.auth import ADMIN_TOKEN_FILE
from infra.cli.exits import Exit, for_status
from infra.cli.output import print_data
from infra.tls import CERT_FILE
from trunkplane.v1 import agent_pb2_grpc, route_pb2_grpc, trunk_pb2_grpc


@dataclass(frozen=True)
class Credentials:
    """Where the CLI's token and trust come from, kept to name them when TLS fails."""

    token: str
    tls: bool
    ca_path: Path
    ca_certificate: bytes | None  # None with TLS on: the system's CAs

    @property
    def trust(self) -> str:
        if self.ca_certificate is not None:
            return f"the CA file {self.ca_path}"
        return f"the system's CAs ({self.ca_path}, the CA file tried, does not exist)"


def connection(env: dict[str, str] | None = None) -> Credentials:
    """The token from TRUNKPLANE_TOKEN / TRUNKPLANE_TOKEN_FILE, the CA from
    TRUNKPLANE_TLS_CA; by default both from the data directory the local service made."""
    env = dict(os.environ if env is None else env)
    data = Path(env.get("TRUNKPLANE_DATA", "./var"))
    token = env.get("TRUNKPLANE_TOKEN", "")
    token_file = Path(env.get("TRUNKPLANE_TOKEN_FILE", data / ADMIN_TOKEN_FILE))
    if not token and token_file.exists():
        token = token_file.read_text().strip()
    ca = Path(env.get("TRUNKPLANE_TLS_CA", data / CERT_FILE))
    tls = env.get("TRUNKPLANE_TLS", "on") != "off"
    return Credentials(token, tls, ca, ca.read_bytes() if tls and ca.exists() else None)


def credentials(env: dict[str, str] | None = None) -> tuple[str, bytes | None]:
    """The token and the CA certificate (None: plaintext, or the system's CAs)."""
    found = connection(env)
    return found.token, found.ca_certificate


@dataclass
class Client:
    """A connection to the service: TLS trusting the CA certificate given (by default the
    service's own self-signed one in the data directory, else the system's CAs), or
    plaintext with TRUNKPLANE_TLS=off; and a bearer token."""

    server: str
    tenant: str
    credentials: Credentials

    def __post_init__(self) -> None:
        if self.credentials.tls:
            self.channel = grpc.secure_channel(self.server, grpc.ssl_channel_credentials(
                root_certificates=self.credentials.ca_certificate))
        else:
            self.channel = grpc.insecure_channel(self.server)
        self.trunks = trunk_pb2_grpc.TrunkServiceStub(self.channel)
        self.routes = route_pb2_grpc.RouteServiceStub(self.channel)
        self.agent = agent_pb2_grpc.AgentServiceStub(self.channel)

    @property
    def token(self) -> str:
        return self.credentials.token

    def metadata(self) -> tuple[tuple[str, str], ...]:
        found = [("x-request-id", uuid.uuid4().hex)]
        if self.token:
            found.append(("authorization", f"Bearer {self.token}"))
        return tuple(found)

    def call(self, method: Any, request: Any) -> Any:
        return method(request, metadata=self.metadata(), timeout=30)


def _violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    found: list[tuple[str, str]] = []
    details: list[Any] = list(status.details) if status else []
    for detail in details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


def hints(error: grpc.RpcError, client: Client | None) -> list[str]:
    """What to do about it, for the failures a newcomer meets first."""
    code, details = error.code(), str(error.details() or "")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return ["set TRUNKPLANE_TOKEN (or TRUNKPLANE_DATA to the service's data directory, "
                "where the first start left admin.token)"]
    if code != grpc.StatusCode.UNAVAILABLE:
        return []
    lowered = details.lower()
    if client and client.credentials.tls and ("ssl" in lowered or "handshake" in lowered
                                              or "certificate" in lowered):
        return [f"TLS failed: the server's certificate is not trusted by "
                f"{client.credentials.trust}; set TRUNKPLANE_TLS_CA to the service's "
                "certificate (tls.crt in its data directory), or TRUNKPLANE_DATA to that "
                "directory"]
    if client and not client.credentials.tls and "socket closed" in lowered:
        return ["the CLI speaks plaintext (TRUNKPLANE_TLS=off); a service with TLS closes "
                "such connections: unset TRUNKPLANE_TLS"]
    return ["is the server running? start it with `make run` or `trunkplane serve`"]


def report(error: grpc.RpcError, client: Client | None = None, as_json: bool = False) -> int:
    code = error.code()
    violations = _violations(error)
    advice = hints(error, client)
    status = for_status(code)
    if as_json:
        print_data({"error": {"code": code.name, "message": error.details(),
                              "violations": [{"field": f, "description": d}
                                             for f, d in violations],
                              "hints": advice, "exit": int(status)}}, sys.stderr)
        return status
    print(f"error: {code.name}" + (":" if violations else f": {error.details()}"),
          file=sys.stderr)
    for field, description in violations:
        print(f"  {field}: {description}", file=sys.stderr)
    for line in advice:
        print(f"  {line}", file=sys.stderr)
    return status


def fail(text: str, status: Exit, as_json: bool = False) -> int:
    """A failure found by the CLI itself (no RPC): one line naming it, and its exit code."""
    if as_json:
        print_data({"error": {"message": text, "exit": int(status)}}, sys.stderr)
    else:
        print(f"error: {text}", file=sys.stderr)
    return status
