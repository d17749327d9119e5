"""Domain errors to gRPC statuses with google.rpc details, built in one place."""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc
from eventsourcing.persistence import IntegrityError
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from domain.errors import (
    AlreadyExistsError,
    ConflictError,
    DomainError,
    FieldViolation,
    ForbiddenError,
    NotFoundError,
    PreconditionError,
    ValidationError,
)

log = logging.getLogger(__name__)
MAX_MESSAGE = 2000
MAX_DESCRIPTION = 300
MAX_VIOLATIONS = 20

CODES: list[tuple[type[DomainError], int]] = [
    (ValidationError, code_pb2.INVALID_ARGUMENT),
    (NotFoundError, code_pb2.NOT_FOUND),
    (AlreadyExistsError, code_pb2.ALREADY_EXISTS),
    (PreconditionError, code_pb2.FAILED_PRECONDITION),
    (ConflictError, code_pb2.ABORTED),
    (ForbiddenError, code_pb2.PERMISSION_DENIED),
]


def status_for(error: DomainError, field_prefix: str = "") -> status_pb2.Status:
    """Messages echo what the caller sent; they are cut so that the status always fits
    the 16 KiB gRPC allows for trailing metadata."""
    code = next(c for kind, c in CODES if isinstance(error, kind))
    details = []
    if isinstance(error, ValidationError):
        violations = error.violations[:MAX_VIOLATIONS]
        detail = error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=_cut(_prefixed(field_prefix, v), 200), description=_cut(v.description))
            for v in violations
        ])
        details.append(_pack(detail))
        message = "; ".join(f"{_cut(_prefixed(field_prefix, v), 200)}: {_cut(v.description)}"
                            for v in violations)
    else:
        message = str(error)
    message = _cut(message, MAX_MESSAGE)
    if isinstance(error, PreconditionError) and error.subjects:
        details.append(_pack(error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type="ROUTE_USES_TRUNK", subject=_cut(s, 200), description=message)
            for s in error.subjects[:MAX_VIOLATIONS]
        ])))
    return status_pb2.Status(code=code, message=message, details=details)


def abort(context: grpc.ServicerContext, error: DomainError, field_prefix: str = "") -> NoReturn:
    context.abort_with_status(rpc_status.to_status(status_for(error, field_prefix)))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def abort_store(context: grpc.ServicerContext, error: Exception) -> NoReturn:
    """The store failed under a valid request: nothing was recorded, the caller may retry."""
    log.exception("event store failure")
    code = grpc.StatusCode.ABORTED if isinstance(error, IntegrityError) else (
        grpc.StatusCode.UNAVAILABLE)
    context.abort(code, f"event store: {type(error).__name__}; nothing was recorded, retry")


def _cut(text: str, limit: int = MAX_DESCRIPTION) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _prefixed(prefix: str, violation: FieldViolation) -> str:
    if not prefix or violation.field.startswith("options.") or violation.field in (
            "template", "page_size", "page_token", "position", "update_mask", "etag", "number",
            "tenant"):
        return violation.field
    return f"{prefix}.{violation.field}"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed
