"""`trunkplane audit ...`: the change history for auditors."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from infra.cli.client import Client
from infra.cli.output import print_json, table
from infra.cli.trunks import show_trunk
from trunkplane.v1 import audit_pb2, audit_pb2_grpc


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="changes, oldest first")
    _filters(listing)
    listing.add_argument("--page-size", type=int, default=100)
    listing.add_argument("--page-token", default="")
    listing.set_defaults(handler=list_changes)
    export = sub.add_parser("export", help="every matching change as CSV or JSON lines")
    _filters(export)
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("--output", help="file to write (default: standard output)")
    export.set_defaults(handler=export_changes)
    at = sub.add_parser("at", help="a trunk's settings at a version or a time")
    at.add_argument("trunk", help="id, or name of a live trunk")
    _point(at, "")
    at.set_defaults(handler=trunk_at)
    verify = sub.add_parser("verify", help="check that no stored event was edited, removed "
                                           "or inserted since it was recorded")
    verify.set_defaults(handler=verify_chain)
    diff = sub.add_parser("diff", help="what changed in a trunk between two points")
    diff.add_argument("trunk")
    _point(diff, "from-")
    _point(diff, "to-")
    diff.set_defaults(handler=trunk_diff)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all-tenants", action="store_true")
    parser.add_argument("--subject", default="", help="a trunk or route: id or name")
    parser.add_argument("--actor", default="")
    parser.add_argument("--type", default="", help="event type, e.g. CredentialsChanged")
    parser.add_argument("--since", type=parse_time, help="ISO time, inclusive")
    parser.add_argument("--until", type=parse_time, help="ISO time, exclusive")


def _point(parser: argparse.ArgumentParser, prefix: str) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(f"--{prefix}version", type=int)
    group.add_argument(f"--{prefix}time", type=parse_time)


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not an ISO time such as 2026-11-26T12:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _filter(client: Client, args: argparse.Namespace) -> audit_pb2.ChangeFilter:
    found = audit_pb2.ChangeFilter(tenant="" if args.all_tenants else client.tenant,
                                   subject=args.subject, actor=args.actor,
                                   event_type=args.type)
    if args.since:
        found.start_time.FromDatetime(args.since)
    if args.until:
        found.end_time.FromDatetime(args.until)
    return found


def _stub(client: Client) -> audit_pb2_grpc.AuditServiceStub:
    return audit_pb2_grpc.AuditServiceStub(client.channel)


def list_changes(client: Client, args: argparse.Namespace) -> int:
    page = client.call(_stub(client).ListChanges, audit_pb2.ListChangesRequest(
        filter=_filter(client, args), page_size=args.page_size, page_token=args.page_token))
    if args.json:
        print_json(page)
        return 0
    table(["position", "time (utc)", "subject", "version", "actor", "event", "reason",
           "changes"], [
        (c.position, c.entry.time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
         c.subject_name or c.subject_id, c.entry.version, c.entry.actor, c.entry.event_type,
         c.entry.reason, "; ".join(f"{f.field}: {f.old_value or '-'} -> {f.new_value or '-'}"
                                   for f in c.entry.changes))
        for c in page.changes])
    if page.next_page_token:
        print(f"more: --page-token {page.next_page_token}")
    return 0


def export_changes(client: Client, args: argparse.Namespace) -> int:
    request = audit_pb2.ExportChangesRequest(filter=_filter(client, args), format=args.format)
    chunks = _stub(client).ExportChanges(request, metadata=client.metadata(), timeout=3600)
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    try:
        for chunk in chunks:
            out.write(chunk.data)
    finally:
        if args.output:
            out.close()
    return 0


def _at(args: argparse.Namespace, prefix: str) -> audit_pb2.PointInTime:
    version = getattr(args, f"{prefix}version")
    point = audit_pb2.PointInTime()
    if version is not None:
        point.version = version
    else:
        point.time.FromDatetime(getattr(args, f"{prefix}time"))
    return point


def trunk_at(client: Client, args: argparse.Namespace) -> int:
    answer = client.call(_stub(client).GetTrunkAt, audit_pb2.GetTrunkAtRequest(
        tenant=client.tenant, trunk=args.trunk, at=_at(args, "")))
    if args.json:
        print_json(answer)
    else:
        show_trunk(answer.trunk)
        if answer.deleted:
            print("(deleted at this point)")
    return 0


def trunk_diff(client: Client, args: argparse.Namespace) -> int:
    request = audit_pb2.DiffTrunkRequest(tenant=client.tenant, trunk=args.trunk,
                                         to=_at(args, "to_"))
    getattr(request, "from").CopyFrom(_at(args, "from_"))
    answer = client.call(_stub(client).DiffTrunk, request)
    if args.json:
        print_json(answer)
        return 0
    print(f"version {answer.from_version} -> {answer.to_version}")
    table(["field", "before", "after"],
          [(c.field, c.old_value, c.new_value) for c in answer.changes])
    return 0


def verify_chain(client: Client, args: argparse.Namespace) -> int:
    report = client.call(_stub(client).VerifyChain, audit_pb2.VerifyChainRequest())
    if args.json:
        print_json(report)
    elif report.intact:
        print(f"intact: {report.checked} events; chain head at position "
              f"{report.head_position}: {report.head}")
    else:
        print(f"TAMPERED: {report.problem}")
        print(f"  the chain was intact up to the event before position {report.position}")
    return 0 if report.intact else 4
