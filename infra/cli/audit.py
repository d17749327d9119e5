"""`trunkplane audit ...`: the change history for auditors."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta

from infra.cli import proofs
from infra.cli.client import Client
from infra.cli.output import note, print_data, print_json, table
from infra.cli.trunks import show_trunk
from trunkplane.v1 import audit_pb2, audit_pb2_grpc

EXAMPLES = """examples:
  trunkplane audit list --subject voco --since 2026-11-01T00:00:00Z
  trunkplane audit export --format jsonl --output changes.jsonl
  trunkplane audit at voco --version 1
  trunkplane audit diff voco --from-version 1          # up to now
  trunkplane audit list --since 1h --type CredentialsChanged
  trunkplane audit list --subject legacy     # every trunk or route that ever had the name
  trunkplane audit at US --route --version 2
  trunkplane audit verify
  trunkplane audit head --json > head.json   # later: trunkplane audit consistency head.json
  trunkplane audit verify-export changes.jsonl --public-key KEY"""


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="changes, oldest first", epilog=EXAMPLES)
    _filters(listing)
    listing.add_argument("--page-size", type=int, default=100, metavar="N",
                         help="changes per page, 1-1000 (default 100)")
    listing.add_argument("--page-token", default="", metavar="TOKEN",
                         help="the next page, as the previous page said")
    listing.set_defaults(handler=list_changes)
    export = sub.add_parser("export", help="every matching change as CSV or JSON lines",
                            epilog=EXAMPLES)
    _filters(export)
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv",
                        help="csv (default) or jsonl, one JSON object a line")
    export.add_argument("--output", metavar="FILE",
                        help="file to write (default: standard output)")
    export.set_defaults(handler=export_changes)
    at = sub.add_parser("at", help="a trunk's (or with --route a route's) settings at a "
                                   "version or a time")
    at.add_argument("trunk", help="id, or name of a live trunk or outbound route")
    at.add_argument("--route", action="store_true", help="a route, not a trunk")
    _point(at, "", required=True)
    at.set_defaults(handler=trunk_at)
    proofs.register(sub)
    diff = sub.add_parser("diff", help="what changed in a trunk between two points (the "
                                       "second defaults to now)", epilog=EXAMPLES)
    diff.add_argument("trunk", help="id, or name of a live trunk or outbound route")
    diff.add_argument("--route", action="store_true", help="a route, not a trunk")
    _point(diff, "from-", required=True)
    _point(diff, "to-", required=False)
    diff.set_defaults(handler=trunk_diff)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all-tenants", action="store_true",
                        help="every tenant, not only --tenant")
    parser.add_argument("--subject", default="", metavar="NAME",
                        help="a trunk or route: id or name")
    parser.add_argument("--actor", default="", metavar="PRINCIPAL",
                        help="only changes made by this principal")
    parser.add_argument("--type", default="", metavar="EVENT",
                        help="event type, e.g. CredentialsChanged")
    parser.add_argument("--since", type=parse_time, metavar="TIME",
                        help="inclusive: an ISO time, `now`, or ago (15m, 1h, 7d)")
    parser.add_argument("--until", type=parse_time, metavar="TIME",
                        help="exclusive, as --since; an export then closes with the signed "
                             "head of the range")


def _point(parser: argparse.ArgumentParser, prefix: str, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    which = {"": "", "from-": " (the earlier point)", "to-": " (the later point; default: now)"}
    group.add_argument(f"--{prefix}version", type=int, metavar="N",
                       help=f"the trunk's version{which[prefix]}")
    group.add_argument(f"--{prefix}time", type=parse_time, metavar="TIME",
                       help=f"an ISO time{which[prefix]}")


RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str) -> datetime:
    """An ISO time, `now`, or a time ago: `90s`, `15m`, `1h`, `7d`, `2w`."""
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    relative = RELATIVE.match(text.strip().lower())
    if relative:
        return datetime.now(UTC) - timedelta(**{UNITS[relative[2]]: int(relative[1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a time: an ISO time such as 2026-11-26T12:00:00Z, `now`, or a "
            "time ago such as 15m, 1h, 7d") from None
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
    written = 0
    try:
        for chunk in chunks:
            out.write(chunk.data)
            written += len(chunk.data)
    finally:
        if args.output:
            out.close()
    if args.output:
        if args.json:
            print_data({"written": args.output, "bytes": written, "format": args.format})
        else:
            note(f"wrote {args.output} ({written} bytes of {args.format})")
    return 0


def _at(args: argparse.Namespace, prefix: str) -> audit_pb2.PointInTime:
    version = getattr(args, f"{prefix}version")
    moment = getattr(args, f"{prefix}time")
    point = audit_pb2.PointInTime()
    if version is not None:
        point.version = version
    else:  # no point given (only `diff --to-`): now
        point.time.FromDatetime(moment or datetime.now(UTC))
    return point


def trunk_at(client: Client, args: argparse.Namespace) -> int:
    if args.route:
        return route_at(client, args)
    answer = client.call(_stub(client).GetTrunkAt, audit_pb2.GetTrunkAtRequest(
        tenant=client.tenant, trunk=args.trunk, at=_at(args, "")))
    if args.json:
        print_json(answer)
    else:
        show_trunk(answer.trunk)
        if answer.deleted:
            print("(deleted at this point)")
    return 0


def route_at(client: Client, args: argparse.Namespace) -> int:
    answer = client.call(_stub(client).GetRouteAt, audit_pb2.GetRouteAtRequest(
        tenant=client.tenant, route=args.trunk, at=_at(args, "")))
    if args.json:
        print_json(answer)
        return 0
    print(f"{answer.kind} route {answer.name}, version {answer.version}"
          + (" (deleted at this point)" if answer.deleted else ""))
    table(["field", "value"], [(s.field, s.value) for s in answer.settings])
    return 0


def trunk_diff(client: Client, args: argparse.Namespace) -> int:
    if args.route:
        route = audit_pb2.DiffRouteRequest(tenant=client.tenant, route=args.trunk,
                                           to=_at(args, "to_"))
        getattr(route, "from").CopyFrom(_at(args, "from_"))
        answer = client.call(_stub(client).DiffRoute, route)
    else:
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
