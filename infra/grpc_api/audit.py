"""AuditService: the change history and trunks at past points."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from domain.errors import NotFoundError, PreconditionError, ValidationError
from domain.trunk import Trunk
from infra.grpc_api.convert import trunk_message
from infra.grpc_api.servicer_base import ServicerBase
from projections.audit import ChangeQuery, ChangeRow, trunk_at, trunk_diff
from projections.chain import head
from projections.chain import verify as verify_chain
from projections.state import doc_of
from trunkplane.v1 import audit_pb2, audit_pb2_grpc, common_pb2

Ctx = grpc.ServicerContext
READ_WAIT = 10.0
CSV_COLUMNS = ("position", "time", "tenant", "subject_kind", "subject_id", "subject_name",
               "version", "actor", "reason", "request_id", "event_type", "changes")


class AuditServicer(ServicerBase, audit_pb2_grpc.AuditServiceServicer):  # type: ignore[misc]
    def __init__(self, base: ServicerBase, wait_for: Callable[[int, float], bool]) -> None:
        super().__init__(base.bus, base.view, base.history, base.default_tenant)
        self.reader = base.history
        self.wait_for = wait_for

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
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if fmt == "csv":
            writer.writerow(CSV_COLUMNS)
        for row in self.reader.all(query):
            if fmt == "csv":
                writer.writerow(_csv_row(row))
            else:
                buffer.write(json.dumps(_json_row(row), ensure_ascii=False) + "\n")
            if buffer.tell() > 64 * 1024:
                yield audit_pb2.ExportChunk(data=buffer.getvalue().encode())
                buffer.seek(0)
                buffer.truncate()
        position, chain_head = head(self.reader.store)
        if fmt == "csv":
            writer.writerow(["chain_head", position, chain_head])
        else:
            buffer.write(json.dumps({"chain_head": {"position": position,
                                                    "hash": chain_head}}) + "\n")
        yield audit_pb2.ExportChunk(data=buffer.getvalue().encode())

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
        return audit_pb2.DiffTrunkResponse(
            from_version=before.version, to_version=after.version,
            changes=[common_pb2.FieldChange(field=c.field, old_value=c.old_value,
                                            new_value=c.new_value)
                     for c in trunk_diff(before, after)])

    def VerifyChain(self, request: audit_pb2.VerifyChainRequest, context: Ctx) -> Any:
        self.read(context, lambda: self._query(audit_pb2.ChangeFilter()))  # caught up first
        report = self.read(context, lambda: verify_chain(self.bus.app, self.reader.store))
        return audit_pb2.VerifyChainResponse(
            intact=report.intact, checked=report.checked, head_position=report.head_position,
            head=report.head, problem=report.problem, position=report.position)

    def _trunk_at(self, tenant: str, ref: str, at: audit_pb2.PointInTime, name: str) -> Trunk:
        self.view.ready()
        trunk_id = UUID(self.view.subject_id(tenant, "trunk", ref))
        point = at.WhichOneof("point")
        if point == "version":
            return trunk_at(self.bus.app, trunk_id, version=at.version)
        if point == "time":
            return trunk_at(self.bus.app, trunk_id, moment=at.time.ToDatetime(tzinfo=UTC))
        raise ValidationError.single(name, "give a version or a time")

    def _query(self, f: audit_pb2.ChangeFilter) -> ChangeQuery:
        target = f.min_position or self.bus.app.head()
        if not self.wait_for(target, READ_WAIT):
            raise PreconditionError(f"the history view has not reached position {target} "
                                    f"within {READ_WAIT:.0f} s; see `projections status`")
        return ChangeQuery(
            tenant=f.tenant, subject_id=self._subject(f.tenant, f.subject) if f.subject else "",
            actor=f.actor, event_type=f.event_type,
            start=_time(f.start_time) if f.HasField("start_time") else None,
            end=_time(f.end_time) if f.HasField("end_time") else None)

    def _subject(self, tenant: str, subject: str) -> str:
        try:
            return str(UUID(subject))
        except ValueError:
            pass
        for kind in ("trunk", "outbound", "pbx"):  # a trunk named "pbx" comes first
            try:
                return self.view.subject_id(tenant or self.default_tenant, kind, subject)
            except NotFoundError:
                continue
        raise NotFoundError(f"no trunk, route or PBX '{subject}'")


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
        if kind == "after" and position.isdigit():
            return int(position)
    except (binascii.Error, UnicodeDecodeError):
        pass
    raise ValidationError.single("page_token", "is not a token this service returned")


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


def _csv_row(row: ChangeRow) -> list[Any]:
    changes = "; ".join(f"{c.field}: {c.old_value} -> {c.new_value}" for c in row.changes)
    return [row.position, row.time.isoformat(), row.tenant, row.subject_kind, row.subject_id,
            row.subject_name, row.version, row.actor, row.reason, row.request_id,
            row.event_type, changes]


def _json_row(row: ChangeRow) -> dict[str, Any]:
    return {
        "position": row.position, "time": row.time.isoformat(), "tenant": row.tenant,
        "subject_kind": row.subject_kind, "subject_id": row.subject_id,
        "subject_name": row.subject_name, "version": row.version, "actor": row.actor,
        "reason": row.reason, "request_id": row.request_id, "event_type": row.event_type,
        "changes": [{"field": c.field, "old": c.old_value, "new": c.new_value}
                    for c in row.changes],
    }
