"""OpsService: projection status, rebuild and verification."""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from domain.application import TrunkplaneApp
from domain.errors import PreconditionError, ValidationError
from domain.model import CommandMeta
from domain.operations import OperatorAction
from infra.grpc_api.context import current
from infra.grpc_api.errors import abort
from infra.ledger.service import LedgerService
from infra.security.tokens import granted
from projections.audit import HistoryReader
from projections.runner import ProjectionRunner, describe
from projections.status import StatusView
from projections.verify import verify
from projections.views import ViewStore
from trunkplane.v1 import ops_pb2, ops_pb2_grpc

Ctx = grpc.ServicerContext
log = logging.getLogger(__name__)




def _meta() -> CommandMeta:
    call = current()
    return CommandMeta(actor=call.actor, request_id=call.request_id)


class OpsServicer(ops_pb2_grpc.OpsServiceServicer):  # type: ignore[misc]
    def __init__(self, app: TrunkplaneApp, store: ViewStore, runner: ProjectionRunner,
                 status: StatusView, ledger: LedgerService) -> None:
        self.app = app
        self.store = store
        self.runner = runner
        self.status = status
        self.ledger = ledger
        self._rebuilding = threading.Lock()

    def WhoAmI(self, request: ops_pb2.WhoAmIRequest, context: Ctx) -> Any:
        call = current()
        return ops_pb2.WhoAmIResponse(principal=call.actor, role=call.role,
                                      methods=granted(call.role))

    def ListAgents(self, request: ops_pb2.ListAgentsRequest, context: Ctx) -> Any:
        """The directory as the status view judges it: alive, silent (its heartbeats
        stopped; expired after an hour) or left (it announced a clean stop)."""
        agents = []
        for doc in self.status.agents():
            if request.tenant and request.tenant not in doc["tenants"]:
                continue
            agent = ops_pb2.Agent(agent_id=doc["agent_id"], address=doc["address"],
                                  tenants=doc["tenants"], stale=doc["condition"] == "silent",
                                  condition=doc["condition"],
                                  partitions=doc.get("partitions") or [])
            agent.observed_at.FromDatetime(datetime.fromisoformat(doc["observed_at"]))
            agent.started_at.FromDatetime(datetime.fromisoformat(doc["started_at"]))
            agents.append(agent)
        return ops_pb2.ListAgentsResponse(agents=agents)

    def GetProjectionStatus(self, request: Any, context: Ctx) -> Any:
        failure = self.runner.failure
        return ops_pb2.GetProjectionStatusResponse(
            projections=[ops_pb2.ProjectionStatus(**row)
                         for row in describe(self.app, self.store)],
            error=f"{type(failure).__name__}: {failure}" if failure else "")

    def RebuildProjection(self, request: ops_pb2.RebuildProjectionRequest,
                          context: Ctx) -> Iterator[ops_pb2.RebuildProgress]:
        self._check(context, request.name)
        self._guard(context, request.name)
        meta = _meta()  # the worker thread does not see the call's context
        if not self._rebuilding.acquire(blocking=False):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "a rebuild is already running")
        progress: queue.Queue[ops_pb2.RebuildProgress | BaseException] = queue.Queue()
        started = time.monotonic()

        def report(position: int, head: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            rate = position / elapsed
            progress.put(ops_pb2.RebuildProgress(
                position=position, head=head, events_per_second=rate,
                eta_seconds=(head - position) / rate if rate else 0.0))

        def work() -> None:
            try:
                gen = self.runner.rebuild(request.name, report)
                self._record("views_rebuilt", {"view": request.name, "generation": gen},
                             meta)
                head = self.app.head()
                rate = head / max(time.monotonic() - started, 1e-6)
                progress.put(ops_pb2.RebuildProgress(position=head, head=head, done=True,
                                                     generation=gen, events_per_second=rate))
            except BaseException as error:  # reported to the caller below
                progress.put(error)
            finally:
                self._rebuilding.release()

        threading.Thread(target=work, name=f"rebuild-{request.name}", daemon=True).start()
        while True:
            item = progress.get()
            if isinstance(item, BaseException):
                context.abort(grpc.StatusCode.INTERNAL, f"rebuild failed: {item}")
            yield item
            if item.done:
                return

    def VerifyProjection(self, request: ops_pb2.VerifyProjectionRequest, context: Ctx) -> Any:
        self._check(context, request.name)
        with tempfile.TemporaryDirectory(prefix="trunkplane-verify-") as scratch:
            position, differences = verify(self.app, self.store, request.name, Path(scratch))
        return ops_pb2.VerifyProjectionResponse(equal=not differences, position=position,
                                                differences=differences)

    def _guard(self, context: Ctx, name: str) -> None:
        """A rebuild re-reads the log: while the log and its proof disagree it would carry
        an edit into the views, so it is refused, and the refusal recorded."""
        history = HistoryReader(self.store)
        try:
            self.ledger.guard_rebuild(history.subject_at, history.tenants())
        except PreconditionError as error:
            try:
                self._record("rebuild_refused", {"view": name, "why": str(error)[:2000]},
                             _meta())
            except Exception:  # a log cut short behind our back refuses appends too
                log.warning("could not record the refused rebuild", exc_info=True)
            abort(context, error)

    def _record(self, action: str, detail: dict[str, Any], meta: CommandMeta) -> None:
        self.app.save(OperatorAction.record("", action, detail, meta))

    def _check(self, context: Ctx, name: str) -> None:
        if name not in self.store.projections:
            known = ", ".join(self.store.projections)
            abort(context, ValidationError.single(
                "name", f"unknown projection '{name}' (known: {known})"))
