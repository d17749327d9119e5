"""AuditService: the change history and trunks at past points."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from domain.errors import ForbiddenError, NotFoundError, PreconditionError, ValidationError
from domain.model import Configured
from domain.routes import InboundRoute, OutboundRoute
from domain.trunk import Trunk
from infra.grpc_api.context import check_tenant, current
from infra.grpc_api.convert import trunk_message
from infra.grpc_api.servicer_base import ServicerBase
from infra.ledger.export import FORMAT, ExportWriter
from infra.ledger.service import LedgerService, NamedFinding
from infra.ledger.signing import SignedHead
from projections.audit import (
    ChangeQuery,
    ChangeRow,
    configured_at,
    event_type_hint,
    known_event_types,
    trunk_at,
    trunk_diff,
)
from projections.history import flatten, render
from projections.state import doc_of
from trunkplane.v1 import audit_pb2, audit_pb2_grpc, common_pb2

Ctx = grpc.ServicerContext
READ_WAIT = 10.0
EXPORT_PAGE = 500


class AuditServicer(ServicerBase, audit_pb2_grpc.AuditServiceServicer):  # type: ignore[misc]
    def __init__(self, base: ServicerBase, wait_for: Callable[[int, float], bool],
                 ledger: LedgerService) -> None:
        super().__init__(base.bus, base.view, base.history, base.default_tenant)
        self.reader = base.history
        self.wait_for = wait_for
        self.ledger = ledger

    def ListChanges(self, request: audit_pb2.ListChangesRequest, context: Ctx) -> Any:
        query = self.read(context, lambda: self._query(request.filter))
        after = self.read(context, lambda: _decode(request.page_token))
        rows, next_after = self.read(context, lambda: self.reader.page(
            query, request.page_size, after))
        return audit_pb2.ListChangesResponse(
            changes=[_change(r) for r in rows],
            next_page_token=_encode(next_after) if next_after is not None else "",
            view_position=self.reader.view_position())

    def ExportChanges(self, request: audit_pb2.ExportChangesRequest,
                      context: Ctx) -> Iterator[audit_pb2.ExportChunk]:
        fmt = request.format or "csv"
        if fmt not in ("csv", "jsonl"):
            self.read(context, lambda: _bad("format", f"'{fmt}' is not one of csv, jsonl"))
        query = self.read(context, lambda: self._query(request.filter))
        rows = self.read(context, lambda: list(self.reader.all(query)))
        signer = self.ledger.signer
        if signer is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this process has no signing key")
        head, head_position = self.read(context, lambda: self._export_head(request, rows))
        writer = ExportWriter(fmt, _header(request.filter, fmt, head_position), signer)
        proofs = self.ledger.row_proofs(head.size)
        buffer = bytearray(writer.start())
        for first in range(0, len(rows), EXPORT_PAGE):
            page = rows[first:first + EXPORT_PAGE]
            found = self.read(context, lambda p=page: proofs.for_positions(  # type: ignore[misc]
                sorted({r.position for r in p})))
            for row in page:
                buffer += writer.row(row, found[row.position])
            if len(buffer) > 64 * 1024:
                yield audit_pb2.ExportChunk(data=bytes(buffer))
                buffer.clear()
        buffer += writer.finish(head, head_position)
        yield audit_pb2.ExportChunk(data=bytes(buffer))

    def _export_head(self, request: audit_pb2.ExportChangesRequest,
                     rows: list[ChangeRow]) -> tuple[SignedHead, int]:
        """The head of the whole log, or with an end time the head of the exported range:
        the tree as it was once the last exported event was written."""
        if request.filter.HasField("end_time"):
            return self.ledger.head(position=rows[-1].position if rows else 0)
        return self.ledger.head()

    def GetTrunkAt(self, request: audit_pb2.GetTrunkAtRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        trunk = self.read(context, lambda: self._trunk_at(tenant, request.trunk, request.at,
                                                          "at"))
        return audit_pb2.GetTrunkAtResponse(trunk=trunk_message(doc_of(trunk)),
                                            deleted=trunk.deleted)

    def DiffTrunk(self, request: audit_pb2.DiffTrunkRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        before = self.read(context, lambda: self._trunk_at(
            tenant, request.trunk, getattr(request, "from"), "from"))
        after = self.read(context, lambda: self._trunk_at(tenant, request.trunk, request.to,
                                                          "to"))
        return _diff_response(before, after)

    def GetRouteAt(self, request: audit_pb2.GetRouteAtRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        route = self.read(context, lambda: self._route_at(tenant, request.route, request.at,
                                                          "at"))
        settings = flatten(route.settings)
        return audit_pb2.GetRouteAtResponse(
            kind=route.KIND, name=str(route.settings.get("name", "")), version=route.version,
            deleted=route.deleted,
            settings=[audit_pb2.Setting(field=k, value=render(v))
                      for k, v in sorted(settings.items())])

    def DiffRoute(self, request: audit_pb2.DiffRouteRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        before = self.read(context, lambda: self._route_at(
            tenant, request.route, getattr(request, "from"), "from"))
        after = self.read(context, lambda: self._route_at(tenant, request.route, request.to,
                                                          "to"))
        return _diff_response(before, after)

    def VerifyLog(self, request: audit_pb2.VerifyLogRequest, context: Ctx) -> Any:
        self.read(context, lambda: self._query(audit_pb2.ChangeFilter()))  # names current
        report = self.read(context, self.ledger.verify)
        named = self.ledger.name(report, self.reader.subject_at, self.view.tenants())
        response = audit_pb2.VerifyLogResponse(
            intact=report.intact, checked=report.checked, tree_size=report.size,
            root_hash=report.root, head_position=report.head_position,
            findings=[_finding(n) for n in named], omitted=report.omitted)
        if report.signed is not None:
            response.signed_head.CopyFrom(self._head_message(
                report.signed, self.ledger.ledger.position_of(report.signed.size)))
        return response

    def GetSignedHead(self, request: audit_pb2.GetSignedHeadRequest, context: Ctx) -> Any:
        head, position = self.read(context, lambda: self.ledger.head(request.tree_size,
                                                                     request.position))
        return self._head_message(head, position)

    def GetConsistencyProof(self, request: audit_pb2.GetConsistencyProofRequest,
                            context: Ctx) -> Any:
        first_root, path, head, position = self.read(context, lambda: self.ledger.consistency(
            request.first_size, request.second_size))
        return audit_pb2.ConsistencyProof(first_size=request.first_size, first_root=first_root,
                                          second=self._head_message(head, position),
                                          path=path)

    def GetInclusionProof(self, request: audit_pb2.GetInclusionProofRequest,
                          context: Ctx) -> Any:
        proof, head, position = self.read(context, lambda: self.ledger.inclusion(
            request.position, request.tree_size))
        return audit_pb2.InclusionProof(position=proof.position, leaf_index=proof.index,
                                        leaf_hash=proof.leaf, path=proof.path,
                                        head=self._head_message(head, position))

    def _head_message(self, head: SignedHead, position: int) -> audit_pb2.SignedHead:
        signer = self.ledger.signer
        return audit_pb2.SignedHead(
            tree_size=head.size, timestamp_ms=head.timestamp_ms, root_hash=head.root,
            key_id=head.key_id, signature=head.signature, position=position,
            public_key=signer.public_base64() if signer is not None else "")

    def _trunk_at(self, tenant: str, ref: str, at: audit_pb2.PointInTime, name: str) -> Trunk:
        self.view.ready()
        trunk_id = UUID(self.view.subject_id(tenant, "trunk", ref))
        point = at.WhichOneof("point")
        if point == "version":
            return trunk_at(self.bus.app, trunk_id, version=at.version)
        if point == "time":
            return trunk_at(self.bus.app, trunk_id, moment=at.time.ToDatetime(tzinfo=UTC))
        raise ValidationError.single(name, "give a version or a time")

    def _route_at(self, tenant: str, ref: str, at: audit_pb2.PointInTime,
                  name: str) -> Configured:
        self.view.ready()
        kind, route_id = self._route_id(tenant, ref)
        cls: type[Configured] = OutboundRoute if kind == "outbound" else InboundRoute
        point = at.WhichOneof("point")
        if point == "version":
            return configured_at(self.bus.app, route_id, cls, "route", version=at.version)
        if point == "time":
            return configured_at(self.bus.app, route_id, cls, "route",
                                 moment=at.time.ToDatetime(tzinfo=UTC))
        raise ValidationError.single(name, "give a version or a time")

    def _route_id(self, tenant: str, ref: str) -> tuple[str, UUID]:
        for kind in ("outbound", "inbound"):
            try:
                return kind, UUID(self.view.subject_id(tenant, kind, ref))
            except NotFoundError:
                continue
        raise NotFoundError(f"no route '{ref}' in tenant '{tenant}'")

    def _query(self, f: audit_pb2.ChangeFilter) -> ChangeQuery:
        target = f.min_position or self.bus.app.head()
        if not self.wait_for(target, READ_WAIT):
            raise PreconditionError(f"the history view has not reached position {target} "
                                    f"within {READ_WAIT:.0f} s; see `projections status`")
        if f.event_type:
            hint = event_type_hint(f.event_type, known_event_types())
            if hint:
                raise ValidationError.single("filter.event_type", hint)
        if f.actor:
            self._check_actor(f.actor)
        tenant = self._scoped(f.tenant)
        return ChangeQuery(
            tenant=tenant, subject_ids=self._subjects(f.tenant, f.subject) if f.subject
            else (), actor=f.actor, event_type=f.event_type,
            start=_time(f.start_time) if f.HasField("start_time") else None,
            end=_time(f.end_time) if f.HasField("end_time") else None)

    def _scoped(self, tenant: str) -> str:
        """The filter's tenant; a token limited to tenants reads only those (its one
        tenant when it names none)."""
        allowed = current().tenants
        if allowed and not tenant:
            if len(allowed) > 1:
                raise ForbiddenError(f"{current().actor} may read only tenants "
                                     f"{', '.join(allowed)}: name one in the filter")
            return allowed[0]
        if tenant:
            check_tenant(tenant)
        return tenant

    def _check_actor(self, actor: str) -> None:
        """An actor nobody is, but part of some actors' names: say whom they may mean."""
        near = self.reader.actors_like(actor)
        if near and actor not in near:
            raise ValidationError.single(
                "filter.actor", f"no change was made by '{actor}'; actors containing it: "
                                f"{', '.join(near)} (the filter matches whole names)")

    def _subjects(self, tenant: str, subject: str) -> tuple[str, ...]:
        """Every trunk or route that ever had the name (deleted, renamed or re-used), or
        the one with that id."""
        try:
            return (str(UUID(subject)),)
        except ValueError:
            pass
        named = self.reader.subjects_named(tenant, subject)
        if named:
            return tuple(named)
        for kind in ("trunk", "outbound", "pbx"):  # a live one the history names otherwise
            try:
                return (self.view.subject_id(tenant or self.default_tenant, kind, subject),)
            except NotFoundError:
                continue
        raise NotFoundError(f"no trunk, route or PBX has ever been named '{subject}'"
                            + (f" in tenant '{tenant}'" if tenant else ""))


def _bad(field: str, description: str) -> None:
    raise ValidationError.single(field, description)


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _encode(position: int) -> str:
    return base64.urlsafe_b64encode(f"after:{position}".encode()).decode()


def _decode(token: str) -> int:
    if not token:
        return 0
    try:
        kind, _, position = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind == "after" and position.isascii() and position.isdigit():
            return int(position)
    except (binascii.Error, UnicodeDecodeError):
        pass
    raise ValidationError.single("page_token", "is not a token this service returned")


def _header(f: audit_pb2.ChangeFilter, fmt: str, head_position: int) -> dict[str, str]:
    """Who exported, when, with which filter (every field, set or not)."""
    call = current()
    return {
        "format": FORMAT, "exported_by": call.actor, "role": call.role,
        "exported_at": datetime.now(UTC).isoformat(), "request_id": call.request_id,
        "filter.tenant": f.tenant or "(all)", "filter.subject": f.subject,
        "filter.actor": f.actor, "filter.event_type": f.event_type,
        "filter.since": _time(f.start_time).isoformat() if f.HasField("start_time") else "",
        "filter.until": _time(f.end_time).isoformat() if f.HasField("end_time") else "",
        "rows_format": fmt, "covers_log_to_position": str(head_position),
    }


def _finding(named: NamedFinding) -> audit_pb2.Finding:
    f = named.finding
    return audit_pb2.Finding(kind=f.kind, position=f.position, tenant=named.tenant,
                             subject_kind=named.kind, subject_id=f.subject_id,
                             subject_name=named.name, version=f.version, detail=f.detail)


def _diff_response(before: Configured, after: Configured) -> audit_pb2.DiffTrunkResponse:
    return audit_pb2.DiffTrunkResponse(
        from_version=before.version, to_version=after.version,
        changes=[common_pb2.FieldChange(field=c.field, old_value=c.old_value,
                                        new_value=c.new_value)
                 for c in trunk_diff(before, after)])


def _change(row: ChangeRow) -> audit_pb2.Change:
    entry = common_pb2.HistoryEntry(
        version=row.version, actor=row.actor, reason=row.reason, request_id=row.request_id,
        event_type=row.event_type,
        changes=[common_pb2.FieldChange(field=c.field, old_value=c.old_value,
                                        new_value=c.new_value) for c in row.changes])
    entry.time.FromDatetime(row.time)
    return audit_pb2.Change(position=row.position, tenant=row.tenant,
                            subject_kind=row.subject_kind, subject_id=row.subject_id,
                            subject_name=row.subject_name, entry=entry)
