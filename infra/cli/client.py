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
from infra.tls import CERT_FILE
from trunkplane.v1 import agent_pb2_grpc, route_pb2_grpc, trunk_pb2_grpc


@dataclass
class Client:
    """A connection to the service: TLS trusting the CA certificate given (by default the
    service's own self-signed one in the data directory), and a bearer token."""

    server: str
    tenant: str
    token: str
    ca_certificate: bytes | None

    def __post_init__(self) -> None:
        if self.ca_certificate is None:
            self.channel = grpc.insecure_channel(self.server)
        else:
            self.channel = grpc.secure_channel(
                self.server, grpc.ssl_channel_credentials(root_certificates=self.ca_certificate))
        self.trunks = trunk_pb2_grpc.TrunkServiceStub(self.channel)
        self.routes = route_pb2_grpc.RouteServiceStub(self.channel)
        self.agent = agent_pb2_grpc.AgentServiceStub(self.channel)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        found = [("x-request-id", uuid.uuid4().hex)]
        if self.token:
            found.append(("authorization", f"Bearer {self.token}"))
        return tuple(found)

    def call(self, method: Any, request: Any) -> Any:
        return method(request, metadata=self.metadata(), timeout=30)


def credentials(env: dict[str, str] | None = None) -> tuple[str, bytes | None]:
    """The token and the CA certificate, from TRUNKPLANE_TOKEN / TRUNKPLANE_TOKEN_FILE and
    TRUNKPLANE_TLS_CA, else from the data directory the local service created them in."""
    env = dict(os.environ if env is None else env)
    data = Path(env.get("TRUNKPLANE_DATA", "./var"))
    token = env.get("TRUNKPLANE_TOKEN", "")
    token_file = Path(env.get("TRUNKPLANE_TOKEN_FILE", data / ADMIN_TOKEN_FILE))
    if not token and token_file.exists():
        token = token_file.read_text().strip()
    if env.get("TRUNKPLANE_TLS", "on") == "off":
        return token, None
    ca = Path(env.get("TRUNKPLANE_TLS_CA", data / CERT_FILE))
    return token, ca.read_bytes() if ca.exists() else None


def report(error: grpc.RpcError) -> int:
    code = error.code()
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    violations = []
    details: list[Any] = list(status.details) if status else []
    for detail in details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [f"  {v.field}: {v.description}" for v in bad.field_violations]
    print(f"error: {code.name}" + (":" if violations else f": {error.details()}"),
          file=sys.stderr)
    for line in violations:
        print(line, file=sys.stderr)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        print("  set TRUNKPLANE_TOKEN (or TRUNKPLANE_DATA to the service's data directory, "
              "where the first start left admin.token)", file=sys.stderr)
    if code == grpc.StatusCode.UNAVAILABLE:
        print("  is the server running? start it with `make run` or `trunkplane serve`",
              file=sys.stderr)
    return 2 if code == grpc.StatusCode.INVALID_ARGUMENT else 1
