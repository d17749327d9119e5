"""The CLI's connection to a trunkplane server, and how it reports a failed call."""

from __future__ import annotations

import getpass
import os
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from trunkplane.v1 import route_pb2_grpc, trunk_pb2_grpc


@dataclass
class Client:
    server: str
    actor: str
    tenant: str

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.server)
        self.trunks = trunk_pb2_grpc.TrunkServiceStub(self.channel)
        self.routes = route_pb2_grpc.RouteServiceStub(self.channel)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-actor", self.actor), ("x-request-id", uuid.uuid4().hex))

    def call(self, method: Any, request: Any) -> Any:
        return method(request, metadata=self.metadata(), timeout=30)


def default_actor() -> str:
    return os.environ.get("TRUNKPLANE_ACTOR") or f"cli:{getpass.getuser()}"


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
    if code == grpc.StatusCode.UNAVAILABLE:
        print("  is the server running? start it with `make run` or `trunkplane serve`",
              file=sys.stderr)
    return 2 if code == grpc.StatusCode.INVALID_ARGUMENT else 1
