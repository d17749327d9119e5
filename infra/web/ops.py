"""Operations: how far each view has read the log, rebuilding a view with its progress
shown as it goes, and the agents with the tenants they hold."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.responses import Response
from starlette.routing import Route

from infra.web.api import ApiError, Caller
from infra.web.console import Console, Visit, see_other
from trunkplane.v1 import ops_pb2

VIEWS = ("config", "history")
STOP_POLLING = 286  # htmx's status for "this is the last answer: stop asking"


@dataclass
class Rebuild:
    """The newest progress of one rebuild, kept while the page polls it."""

    name: str
    started_by: str
    position: int = 0
    head: int = 0
    events_per_second: float = 0.0
    eta_seconds: float = 0.0
    done: bool = False
    generation: int = 0
    error: str = ""

    @property
    def percent(self) -> int:
        return 100 if self.done else int(100 * self.position / self.head) if self.head else 0


async def follow(api: Caller, rebuild: Rebuild) -> None:
    try:
        async for step in api.stream(api.ops.RebuildProjection,
                                     ops_pb2.RebuildProjectionRequest(name=rebuild.name)):
            rebuild.position, rebuild.head = step.position, step.head
            rebuild.events_per_second, rebuild.eta_seconds = (step.events_per_second,
                                                              step.eta_seconds)
            rebuild.done, rebuild.generation = step.done, step.generation
    except ApiError as error:
        rebuild.error = str(error)
    rebuild.done = True


def routes(console: Console) -> list[Route]:
    rebuilds: dict[str, Rebuild] = {}
    running: set[asyncio.Task[None]] = set()

    async def show(visit: Visit) -> Response:
        api = visit.api
        status = await api.call(api.ops.GetProjectionStatus, ops_pb2.GetProjectionStatusRequest())
        agents = await api.call(api.ops.ListAgents, ops_pb2.ListAgentsRequest())
        return console.render(visit.request, "ops.html", visit.session, status=status,
                              agents=agents.agents, rebuilds=rebuilds, views=VIEWS)

    async def rebuild(visit: Visit) -> Response:
        name = str((await visit.request.form()).get("name", ""))
        current = rebuilds.get(name)
        if current is None or current.done:
            rebuilds[name] = current = Rebuild(name, visit.session.abilities.role)
            task = asyncio.create_task(follow(visit.api, current))
            running.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(running.discard)
        return see_other("/ops")

    async def progress(visit: Visit) -> Response:
        found = rebuilds.get(visit.request.path_params["name"])
        return console.render(visit.request, "rebuild_progress.html", visit.session,
                              STOP_POLLING if found is None or found.done else 200,
                              rebuild=found)

    page = console.page
    return [Route("/ops", page(show), methods=["GET"]),
            Route("/ops/rebuild", page(rebuild), methods=["POST"]),
            Route("/ops/rebuild/{name}", page(progress), methods=["GET"])]
