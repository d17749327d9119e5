"""`trunkplane projections ...` and `trunkplane replay`: the SREs' tools."""

from __future__ import annotations

import argparse
import sys

from infra.cli.audit import parse_time
from infra.cli.client import Client
from infra.cli.output import print_json, table
from trunkplane.v1 import ops_pb2, ops_pb2_grpc

NAMES = ("config", "history")


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("status", help="position, head and lag of each view").set_defaults(
        handler=status)
    rebuild = sub.add_parser("rebuild", help="rebuild a view from the first event")
    which = rebuild.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", choices=NAMES)
    which.add_argument("--all", action="store_true")
    rebuild.set_defaults(handler=rebuild_views)
    verify = sub.add_parser("verify", help="compare a view with a fresh rebuild")
    verify.add_argument("name", choices=NAMES)
    verify.set_defaults(handler=verify_view)


def register_replay(parser: argparse.ArgumentParser) -> None:
    point = parser.add_mutually_exclusive_group(required=True)
    point.add_argument("--until", type=parse_time, help="ISO time: events up to it")
    point.add_argument("--position", type=int, help="log position: events up to it")
    parser.add_argument("--into", required=True, help="a new directory for the views")
    parser.set_defaults(handler=None)


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
    for name in NAMES if args.all else (args.name,):
        progress = _stub(client).RebuildProjection(
            ops_pb2.RebuildProjectionRequest(name=name), metadata=client.metadata(),
            timeout=24 * 3600)
        for step in progress:
            _bar(name, step)
        print(file=sys.stderr)
        print(f"{name}: rebuilt as generation {step.generation}, now live")
    return 0


def _bar(name: str, step: ops_pb2.RebuildProgress, width: int = 30) -> None:
    share = step.position / step.head if step.head else 1.0
    filled = int(share * width)
    print(f"\r{name} [{'#' * filled}{' ' * (width - filled)}] {share:6.1%} "
          f"{step.position}/{step.head} events, {step.events_per_second:,.0f} ev/s, "
          f"ETA {step.eta_seconds:.0f} s", end="", file=sys.stderr, flush=True)


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
         "STALE" if a.stale else "alive") for a in answer.agents])
    return 0
