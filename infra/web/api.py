"""The console's only way into trunkplane: the gRPC API, as any other client, with the
signed-in person's token on every call. Failures come back as `ApiError`, with the
`BadRequest` field violations and the `PreconditionFailure` subjects unpacked."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from trunkplane.v1 import (
    audit_pb2_grpc,
    ops_pb2_grpc,
    route_pb2_grpc,
    trunk_pb2_grpc,
)

TIMEOUT = 30.0


@dataclass
class ApiError(Exception):
    """A refused call: the status code's name, the message, and the fields it names."""

    code: str
    message: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    subjects: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _details(error: grpc.aio.AioRpcError) -> tuple[dict[str, list[str]], list[str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    fields: dict[str, list[str]] = {}
    subjects: list[str] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for violation in bad.field_violations:
                fields.setdefault(violation.field, []).append(violation.description)
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            subjects += [v.subject for v in failure.violations]
    return fields, subjects


def api_error(error: grpc.aio.AioRpcError) -> ApiError:
    fields, subjects = _details(error)
    return ApiError(error.code().name, error.details() or "", fields, subjects)


class Api:
    """One channel to the service for the whole console; stubs per service."""

    def __init__(self, target: str, ca_certificate: bytes | None,
                 server_name: str = "") -> None:
        self.target = target
        self.ca_certificate = ca_certificate
        # The name to check the service's certificate against, when it is not the host
        # of the target (the console calls its own process on loopback).
        self.server_name = server_name
        self._channel: grpc.aio.Channel | None = None

    def channel(self) -> grpc.aio.Channel:
        """Made on first use, inside the console's event loop, which an aio channel is
        bound to."""
        if self._channel is None:
            if self.ca_certificate is None:
                self._channel = grpc.aio.insecure_channel(self.target)
            else:
                credentials = grpc.ssl_channel_credentials(root_certificates=self.ca_certificate)
                options = ([("grpc.ssl_target_name_override", self.server_name)]
                           if self.server_name else [])
                self._channel = grpc.aio.secure_channel(self.target, credentials, options)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def as_(self, token: str) -> Caller:
        return Caller(self, token)


class Caller:
    """The API as one signed-in person: their token on every call, a fresh request id."""

    def __init__(self, api: Api, token: str) -> None:
        channel = api.channel()
        self.token = token
        self.trunks = trunk_pb2_grpc.TrunkServiceStub(channel)
        self.routes = route_pb2_grpc.RouteServiceStub(channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(channel)
        self.ops = ops_pb2_grpc.OpsServiceStub(channel)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),
                ("x-request-id", f"web-{uuid.uuid4().hex}"))

    async def call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, metadata=self.metadata(), timeout=TIMEOUT)
        except grpc.aio.AioRpcError as error:
            raise api_error(error) from None

    async def stream(self, method: Any, request: Any,
                     timeout: float | None = None) -> AsyncIterator[Any]:
        call = method(request, metadata=self.metadata(), timeout=timeout)
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as error:
            raise api_error(error) from None
        finally:
            call.cancel()
