"""TrunkService: translates proto <-> commands and views, nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import grpc

from domain import commands
from domain.catalog import TRUNK
from domain.errors import DomainError, ValidationError
from domain.model import CommandMeta
from domain.operations import OperatorAction
from domain.sync import SyncReport, sync_tenant
from domain.templates import TEMPLATES
from domain.trunk import Trunk
from domain.unit_of_work import UnitOfWork
from infra.backup.config_document import dumps, export_document, read_document
from infra.grpc_api.aio import in_thread, threaded
from infra.grpc_api.context import current
from infra.grpc_api.convert import (
    call_message,
    command_meta,
    history_message,
    masked_patch,
    status_message,
    trunk_message,
    trunk_settings,
)
from infra.grpc_api.errors import abort
from infra.grpc_api.servicer_base import ServicerBase
from infra.security.sealing import PassphraseSealer
from projections.calls import CallQuery, CallStore
from projections.config_view import Page
from projections.state import doc_of
from projections.status import StatusView
from projections.status_feed import AsyncSubscription, StatusFeed
from trunkplane.v1 import trunk_pb2, trunk_pb2_grpc

Ctx = grpc.ServicerContext
MAX_WATCHED = 500  # trunks named in one WatchTrunkStatus (each is looked up once)


class TrunkServicer(ServicerBase, trunk_pb2_grpc.TrunkServiceServicer):  # type: ignore[misc]
    def __init__(self, base: ServicerBase, status: StatusView, calls: CallStore) -> None:
        super().__init__(base.bus, base.view, base.history, base.default_tenant)
        self.status = status
        self.calls = calls
        # the feed's changes are serialised once for every watcher (issue 16): the streams
        # send the bytes as they are (the servers' serializer passes bytes through)
        self.feed: StatusFeed[bytes] = StatusFeed(status, self._serialised)

    def ListCalls(self, request: trunk_pb2.ListCallsRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        trunk_id = ""
        if request.trunk:  # a name: as the views know it once they reflect the log's head
            self.ready(context, 0)
            trunk_id = self.read(context, lambda: self.view.subject_id(
                tenant, TRUNK, request.trunk))
        query = CallQuery(
            tenant=tenant, direction=request.direction, trunk_id=trunk_id,
            number=request.number, final_code=request.final_code,
            start_time=_moment(request, "start_time"), end_time=_moment(request, "end_time"))
        records, token = self.read(context, lambda: self.calls.page(
            query, request.page_size, request.page_token))
        return trunk_pb2.ListCallsResponse(calls=[call_message(r) for r in records],
                                           next_page_token=token)

    def CreateTrunk(self, request: trunk_pb2.CreateTrunkRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        meta = command_meta(request, request.options)
        raw = trunk_settings(request.trunk)
        done = self.run(context, lambda uow: commands.create_trunk(
            uow, tenant, raw, request.template, meta), "trunk")
        return self._response(done.unwrap(), done.position)

    def GetTrunk(self, request: trunk_pb2.GetTrunkRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        self.ready(context, request.min_position)
        return trunk_message(self.read(context, lambda: self.view.get(
            tenant, TRUNK, request.trunk)))

    def ListTrunks(self, request: trunk_pb2.ListTrunksRequest, context: Ctx) -> Any:
        _, position, page = self._page(request, context)
        return trunk_pb2.ListTrunksResponse(
            trunks=[trunk_message(t) for t in page.items],
            next_page_token=page.next_page_token, total_size=page.total_size,
            view_position=position)

    def UpdateTrunk(self, request: trunk_pb2.UpdateTrunkRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        meta = command_meta(request, request.options)
        patch = self.read(context, lambda: masked_patch(
            request.changes, trunk_settings(request.changes), list(request.update_mask.paths)))
        done = self.run(context, lambda uow: commands.update_trunk(
            uow, tenant, request.trunk, patch, request.etag, meta), "changes")
        return self._response(done.unwrap(), done.position)

    def DeleteTrunk(self, request: trunk_pb2.DeleteTrunkRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        meta = command_meta(request, request.options)
        done = self.run(context, lambda uow: commands.delete_trunk(
            uow, tenant, request.trunk, request.etag, meta))
        return self._response(done.unwrap(), done.position)

    def ListProviderTemplates(self, request: Any, context: Ctx) -> Any:
        return trunk_pb2.ListProviderTemplatesResponse(templates=[
            trunk_pb2.ProviderTemplate(
                id=t.id, display_name=t.display_name, description=t.description,
                transports=list(t.transports),
                defaults=trunk_pb2.Trunk(**{k: v for k, v in t.settings.items()}))
            for t in TEMPLATES.values()
        ])

    def GetTrunkHistory(self, request: trunk_pb2.GetTrunkHistoryRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        position = self.ready(context, request.min_position)
        trunk_id, rows = self.read(context, lambda: self.changes_of(
            tenant, TRUNK, request.trunk))
        return trunk_pb2.GetTrunkHistoryResponse(
            trunk_id=trunk_id, entries=[history_message(r) for r in rows],
            view_position=position)

    def GetTrunkStatus(self, request: trunk_pb2.GetTrunkRequest, context: Ctx) -> Any:
        tenant = self.tenant(context, request.tenant)
        self.ready(context, request.min_position)
        config = self.read(context, lambda: self.view.get(tenant, TRUNK, request.trunk))
        observed = self.status.of(tenant, [config["id"]])
        return status_message(config, observed.get(config["id"]), self._agents())

    def ListTrunkStatuses(self, request: trunk_pb2.ListTrunksRequest, context: Ctx) -> Any:
        tenant, position, page = self._page(request, context)
        observed = self.status.of(tenant, [t["id"] for t in page.items])
        agents = self._agents()
        return trunk_pb2.ListTrunkStatusesResponse(
            statuses=[status_message(t, observed.get(t["id"]), agents) for t in page.items],
            next_page_token=page.next_page_token, total_size=page.total_size,
            view_position=position)

    def _agents(self) -> dict[str, Any]:
        """The agent directory by agent id, to tell a stale observation from a live one."""
        return {doc["agent_id"]: doc for doc in self.status.agents()}

    async def WatchTrunkStatus(self, request: trunk_pb2.WatchTrunkStatusRequest, context: Any
                               ) -> AsyncIterator[trunk_pb2.TrunkStatusChange | bytes]:
        """A coroutine of the asyncio server (issue 16): it holds no thread while open. Its
        reads run on the pool; the changes come from the feed's one reader."""
        threaded_context = threaded(context)
        tenant, position, wanted, first = await in_thread(
            threaded_context, self._watch_start, request, threaded_context)
        for change in first:
            yield change
        async for followed in self._follow(tenant, position, wanted, threaded_context):
            yield followed

    def _watch_start(self, request: trunk_pb2.WatchTrunkStatusRequest, context: Ctx
                     ) -> tuple[str, int, frozenset[str], list[trunk_pb2.TrunkStatusChange]]:
        """The watched trunks, where to follow from, and the current statuses first when
        the request gives no position."""
        tenant = self.tenant(context, request.tenant)
        if len(request.trunks) > MAX_WATCHED:
            abort(context, ValidationError.single(
                "trunks", f"at most {MAX_WATCHED} trunks (got {len(request.trunks)}); leave "
                          "it empty to watch every trunk of the tenant"))
        self.ready(context, 0)
        wanted = frozenset(self.read(context, lambda: [
            self.view.subject_id(tenant, TRUNK, ref) for ref in request.trunks]))
        position = request.since_position
        first: list[trunk_pb2.TrunkStatusChange] = []
        if position == 0:
            position = self.status.head()
            configs = [c for c in self.view.trunk_docs(tenant) if not wanted or c["id"] in wanted]
            observed = self.status.of(tenant, [c["id"] for c in configs])
            agents = self._agents()
            first = [trunk_pb2.TrunkStatusChange(
                position=position, current=True,
                status=status_message(config, observed.get(config["id"]), agents))
                for config in configs]
        return tenant, position, wanted, first

    async def _follow(self, tenant: str, position: int, wanted: frozenset[str],
                      context: Any) -> AsyncIterator[trunk_pb2.TrunkStatusChange | bytes]:
        """The changes after `position`: those before the feed's own position read here
        (on the pool), the rest handed over by the feed (read and built once for every
        watcher). The feed closes the subscription once `context` is inactive (the client
        left, the token was revoked); a cancelled call ends at its `await`. The feed's
        changes are already serialised (bytes)."""
        loop = asyncio.get_running_loop()
        while context.is_active():
            subscription = await in_thread(context, self.feed.subscribe, tenant, position,
                                           wanted, context.is_active, loop)
            assert isinstance(subscription, AsyncSubscription)
            try:
                missed = await in_thread(context, self._missed_list, tenant, position,
                                         subscription.joined, wanted)
                for change in missed:
                    position = change.position
                    yield change
                while not (subscription.closed or subscription.dropped):
                    for taken in await subscription.take_async():
                        position, change = taken
                        yield change
            finally:
                self.feed.leave(subscription)
            if not subscription.dropped:  # the client or the server is leaving
                return

    def _missed_list(self, tenant: str, after: int, until: int,
                     wanted: frozenset[str]) -> list[trunk_pb2.TrunkStatusChange]:
        return list(self._missed(tenant, after, until, wanted))

    def _missed(self, tenant: str, after: int, until: int,
                wanted: frozenset[str]) -> Iterator[trunk_pb2.TrunkStatusChange]:
        while after < until:
            changes = self.status.changes_after(tenant, after)
            for position, observed in changes:
                if position > until:
                    return
                after = position
                if not wanted or observed["trunk_id"] in wanted:
                    change = self._change(tenant, position, observed)
                    if change is not None:
                        yield change
            if not changes:
                return

    def _serialised(self, tenant: str, position: int, observed: dict[str, Any]) -> bytes | None:
        change = self._change(tenant, position, observed)
        return None if change is None else change.SerializeToString()

    def _change(self, tenant: str, position: int,
                observed: dict[str, Any]) -> trunk_pb2.TrunkStatusChange | None:
        """A change as watchers see it (none once its trunk is deleted): just observed, so
        not stale."""
        trunk = self.view.trunk_doc(tenant, observed["trunk_id"])
        if trunk is None:
            return None
        return trunk_pb2.TrunkStatusChange(position=position,
                                           status=status_message(trunk, observed))

    def ExportConfiguration(self, request: trunk_pb2.ExportConfigurationRequest,
                            context: Ctx) -> Any:
        self.ready(context, 0)
        if request.all_tenants and current().tenants:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"{current().actor} may export only its tenants: name one")
        tenants = (self.read(context, self.view.tenants) if request.all_tenants
                   else [self.tenant(context, request.tenant)])
        if request.with_secrets and current().role != "admin":
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          "exporting passwords needs the role admin")
        sealer = (self.read(context, lambda: PassphraseSealer(request.passphrase))
                  if request.with_secrets else None)
        document = export_document(self.bus.app, tenants, sealer, lambda tenant: [
            doc["id"] for doc in self.view.channel_docs(tenant)])
        if request.with_secrets:  # who took the passwords out, and of which tenants
            call = current()
            self.bus.app.save(OperatorAction.record(
                tenants[0] if len(tenants) == 1 else "", "secrets_exported",
                {"tenants": ", ".join(tenants)},
                CommandMeta(actor=call.actor, request_id=call.request_id)))
        return trunk_pb2.ConfigurationDocument(json=dumps(document))

    def ImportConfiguration(self, request: trunk_pb2.ImportConfigurationRequest,
                            context: Ctx) -> Any:
        desired = self.read(context, lambda: read_document(request.json, request.passphrase))
        for tenant in desired:
            self.tenant(context, tenant)
        meta = command_meta(request, request.options)

        def restore(uow: UnitOfWork) -> dict[str, SyncReport]:
            return {tenant: sync_tenant(uow, tenant, config, meta)
                    for tenant, config in desired.items()}

        if request.dry_run:
            done = self.bus.app.rehearse(restore)
            if isinstance(done.error, DomainError):
                abort(context, done.error)
        else:
            done = self.run(context, restore)
        reports = done.unwrap()
        return trunk_pb2.ImportConfigurationResponse(
            changes=[f"{t}: {c}" for t, r in reports.items() for c in r.changes],
            kept=[f"{t}: {k}" for t, r in reports.items() for k in r.kept],
            applied=not request.dry_run, position=done.position,
            new_history_tenants=[t for t, r in reports.items() if r.new_history],
            replayed=any(r.replayed for r in reports.values()))

    def _page(self, request: trunk_pb2.ListTrunksRequest,
              context: Ctx) -> tuple[str, int, Page]:
        tenant = self.tenant(context, request.tenant)
        position = self.ready(context, request.min_position)
        enabled = request.enabled if request.HasField("enabled") else None
        page = self.read(context, lambda: self.view.trunks(
            tenant, request.page_size, request.page_token, request.type, enabled))
        return tenant, position, page

    def _response(self, outcome: commands.Outcome, position: int) -> trunk_pb2.TrunkResponse:
        assert isinstance(outcome.aggregate, Trunk)
        return trunk_pb2.TrunkResponse(trunk=trunk_message(doc_of(outcome.aggregate)),
                                       warnings=outcome.warnings, position=position)


def _moment(request: trunk_pb2.ListCallsRequest, name: str) -> datetime | None:
    if not request.HasField(name):
        return None
    return getattr(request, name).ToDatetime(UTC)  # type: ignore[no-any-return]
