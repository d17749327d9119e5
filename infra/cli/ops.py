"""`trunkplane projections ...` and `trunkplane replay`: the SREs' tools."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from infra.cli.client import Client
from infra.cli.output import print_data, print_json, table
from trunkplane.v1 import ops_pb2, ops_pb2_grpc

NAMES = ("config", "history")


EXAMPLES = """examples:
  trunkplane projections status
  trunkplane projections rebuild --all      # reads go on; a progress bar at a terminal
  trunkplane projections verify history     # exit 3 when the view differs"""


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("status", help="position, head and lag of each view").set_defaults(
        handler=status)
    rebuild = sub.add_parser("rebuild", help="rebuild a view from the first event",
                             epilog=EXAMPLES)
    which = rebuild.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", choices=NAMES, help="the view to rebuild")
    which.add_argument("--all", action="store_true", help="every view, one after the other")
    rebuild.set_defaults(handler=rebuild_views)
    verify = sub.add_parser("verify", help="compare a view with a fresh rebuild")
    verify.add_argument("name", choices=NAMES, help="the view to compare")
    verify.set_defaults(handler=verify_view)


def _stub(client: Client) -> ops_pb2_grpc.OpsServiceStub:
    return ops_pb2_grpc.OpsServiceStub(client.channel)


def status(client: Client, args: argparse.Namespace) -> int:
    answer = client.call(_stub(client).GetProjectionStatus,
                         ops_pb2.GetProjectionStatusRequest())
    if args.json:
        print_json(answer)
        return 0
    table(["view", "generation", "position", "head", "lag (events)", "lag (s)"], [
        (p.name, p.generation, p.position, p.head, p.lag_events, f"{p.lag_seconds:.1f}")
        for p in answer.projections])
    if answer.error:
        print(f"runner error: {answer.error}", file=sys.stderr)
    return 0


def rebuild_views(client: Client, args: argparse.Namespace) -> int:
    done = []
    for name in NAMES if args.all else (args.name,):
        progress = _stub(client).RebuildProjection(
            ops_pb2.RebuildProjectionRequest(name=name), metadata=client.metadata(),
            timeout=24 * 3600)
        bar = Progress(name, sys.stderr)
        for step in progress:
            bar.show(step)
        bar.end()
        done.append({"view": name, "generation": step.generation, "position": step.position})
        if not args.json:
            print(f"{name}: rebuilt as generation {step.generation}, now live")
    if args.json:
        print_data({"rebuilt": done})
    return 0


class Progress:
    """A bar redrawn in place at a terminal; piped, one plain line every 10% (a `\r` would
    run the lines together in a file)."""

    def __init__(self, name: str, stream: TextIO, width: int = 30) -> None:
        self.name, self.stream, self.width = name, stream, width
        self.live = stream.isatty()
        self.last_tenth = -1
        self.drawn = False

    def show(self, step: ops_pb2.RebuildProgress) -> None:
        share = step.position / step.head if step.head else 1.0
        text = (f"{share:6.1%} {step.position}/{step.head} events, "
                f"{step.events_per_second:,.0f} ev/s, ETA {step.eta_seconds:.0f} s")
        if self.live:
            filled = int(share * self.width)
            print(f"\r{self.name} [{'#' * filled}{' ' * (self.width - filled)}] {text}",
                  end="", file=self.stream, flush=True)
            self.drawn = True
        elif int(share * 10) > self.last_tenth:
            self.last_tenth = int(share * 10)
            print(f"{self.name}: {text.strip()}", file=self.stream, flush=True)

    def end(self) -> None:
        if self.drawn:
            print(file=self.stream)


def verify_view(client: Client, args: argparse.Namespace) -> int:
    answer = client.call(_stub(client).VerifyProjection,
                         ops_pb2.VerifyProjectionRequest(name=args.name))
    if args.json:
        print_json(answer)
    elif answer.equal:
        print(f"{args.name}: equal to a fresh rebuild up to position {answer.position}")
    else:
        print(f"{args.name}: DIFFERS from a fresh rebuild up to position {answer.position}")
        for line in answer.differences:
            print(f"  {line}")
    return 0 if answer.equal else 3


def register_agents(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant-only", action="store_true",
                        help="only the agents holding the --tenant")
    parser.set_defaults(handler=list_agents)


def _state(agent: ops_pb2.Agent) -> str:
    """alive, left, or SILENT (the one to look at)."""
    state = agent.condition or ("silent" if agent.stale else "alive")
    return state.upper() if state == "silent" else state


def list_agents(client: Client, args: argparse.Namespace) -> int:
    answer = _stub(client).ListAgents(
        ops_pb2.ListAgentsRequest(tenant=client.tenant if args.tenant_only else ""),
        metadata=client.metadata())
    if args.json:
        print_json(answer)
        return 0
    table(["agent", "AgentService at", "tenants", "last heartbeat (utc)", "state"], [
        (a.agent_id, a.address or "-", ",".join(a.tenants) or "-",
         a.observed_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
         _state(a)) for a in answer.agents])
    return 0
