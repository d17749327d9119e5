"""The CLI's connection to a trunkplane server, and how it reports a failed call."""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from domain.text import escape_control
from infra.cli.exits import Exit, for_status
from infra.cli.output import print_data
from infra.grpc_api.clients import Credentials
from trunkplane.v1 import agent_pb2_grpc, alert_pb2_grpc, route_pb2_grpc, trunk_pb2_grpc


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
        self.alerts = alert_pb2_grpc.AlertServiceStub(self.channel)

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
    if "being taken over" in lowered:  # an agent answered: the tenant is moving to it
        return []
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
    details = escape_control(error.details() or "")  # it may echo what was sent
    print(f"error: {code.name}" + (":" if violations else f": {details}"), file=sys.stderr)
    for field, description in violations:
        print(f"  {escape_control(field)}: {escape_control(description)}", file=sys.stderr)
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
