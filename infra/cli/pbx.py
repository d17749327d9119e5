"""`trunkplane pbx ...`: the tenant's PBX as the agents' PBX face sees it, and
`trunkplane calls`: the call records."""

from __future__ import annotations

import argparse
import sys

from infra.cli.audit import parse_time
from infra.cli.client import Client
from infra.cli.exits import Exit
from infra.cli.output import fields, print_json, table
from trunkplane.v1 import common_pb2, route_pb2, trunk_pb2

EXAMPLES = """examples:
  trunkplane pbx set --source 192.0.2.10 --source 198.51.100.0/24 \\
      --target 'sip:pbx.example.com;transport=tcp' --target sip:192.0.2.10:5060,20
  echo 'digest-secret-for-the-pbx' | trunkplane pbx set --username pbx-1 --password-stdin
  trunkplane pbx set --enabled off --reason "PBX moved, OPS-31"
  trunkplane pbx show --json"""
CALL_EXAMPLES = """examples:
  trunkplane calls                              # the newest 50 calls of the tenant
  trunkplane calls --direction inbound --code 486 --since 2026-11-29T00:00:00Z
  trunkplane calls --trunk voco --number 12125550100 --json"""


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="the tenant's PBX access (never the password)",
                          epilog=EXAMPLES)
    show.set_defaults(handler=show_pbx)
    change = sub.add_parser("set", help="change what the options name, nothing else",
                            epilog=EXAMPLES)
    change.add_argument("--source", action="append", metavar="CIDR",
                        help="a network the PBX sends calls from (a bare IP is one host); "
                             "repeat; replaces the list")
    change.add_argument("--no-sources", action="store_true", help="empty the source list")
    change.add_argument("--target", action="append", metavar="URI[,PRIORITY[,WEIGHT]]",
                        help="where inbound calls go, e.g. sip:pbx.example.com,10,1 (lower "
                             "priority first); repeat; replaces the list")
    change.add_argument("--no-targets", action="store_true", help="empty the target list")
    change.add_argument("--username", metavar="NAME",
                        help="digest the PBX must also answer (with a password)")
    secret = change.add_mutually_exclusive_group()
    secret.add_argument("--password", metavar="SECRET",
                        help="visible to other local users; prefer --password-stdin")
    secret.add_argument("--password-stdin", action="store_true",
                        help="read the digest password from stdin")
    change.add_argument("--no-credentials", action="store_true",
                        help="source addresses alone: drop username and password")
    change.add_argument("--enabled", choices=("on", "off"),
                        help="off: the PBX face refuses this tenant's calls; kept")
    change.add_argument("--etag", default="", metavar="ETAG",
                        help="fail if the PBX access changed since this etag")
    change.add_argument("--reason", default="", metavar="TEXT",
                        help="why; recorded in the history")
    change.add_argument("--request-id", default="", metavar="ID",
                        help="makes a retry change nothing")
    change.set_defaults(handler=set_pbx)


def register_calls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--direction", choices=("outbound", "inbound"),
                        help="only calls in this direction")
    parser.add_argument("--trunk", default="", metavar="TRUNK",
                        help="only calls that tried this trunk (id or name)")
    parser.add_argument("--number", default="", metavar="NUMBER",
                        help="dialled or calling number, as received or as sent")
    parser.add_argument("--code", type=int, default=0, metavar="N",
                        help="only calls that ended with this SIP code (200: answered)")
    parser.add_argument("--since", type=parse_time, metavar="TIME",
                        help="started at or after, ISO time")
    parser.add_argument("--until", type=parse_time, metavar="TIME",
                        help="started before, ISO time")
    parser.add_argument("--limit", type=int, default=50, metavar="N",
                        help="at most this many, newest first (1-1000)")
    parser.add_argument("--page-token", default="", metavar="TOKEN",
                        help="continue after a previous page (--json shows the token)")
    parser.set_defaults(handler=list_calls)


def show_pbx(client: Client, args: argparse.Namespace) -> int:
    shown = client.call(client.routes.GetPbxAccess,
                        route_pb2.GetPbxAccessRequest(tenant=client.tenant))
    return _print(shown, args)


def set_pbx(client: Client, args: argparse.Namespace) -> int:
    changes, paths = _changes(args)
    if not paths:
        print("error: name something to change (see `trunkplane pbx set --help`)",
              file=sys.stderr)
        return int(Exit.USAGE)
    request = route_pb2.UpdatePbxAccessRequest(
        tenant=client.tenant, pbx=changes, etag=args.etag,
        options=common_pb2.CommandOptions(reason=args.reason, request_id=args.request_id))
    request.update_mask.paths.extend(paths)
    return _print(client.call(client.routes.UpdatePbxAccess, request).pbx, args)


def _changes(args: argparse.Namespace) -> tuple[route_pb2.PbxAccess, list[str]]:
    changes, paths = route_pb2.PbxAccess(), []
    if args.source or args.no_sources:
        changes.source_cidrs.extend(args.source or [])
        paths.append("source_cidrs")
    if args.target or args.no_targets:
        changes.targets.extend(_target(t) for t in args.target or [])
        paths.append("targets")
    if args.no_credentials:
        paths += ["username", "password"]
    if args.username is not None:
        changes.username = args.username
        paths.append("username")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else args.password
    if password is not None:
        changes.password = password
        paths.append("password")
    if args.enabled is not None:
        changes.enabled = args.enabled == "on"
        paths.append("enabled")
    return changes, list(dict.fromkeys(paths))


def _target(text: str) -> route_pb2.PbxTarget:
    """URI[,PRIORITY[,WEIGHT]]: a SIP URI holds no comma outside its headers, which a
    target may not have."""
    uri, *numbers = [part.strip() for part in text.split(",")]
    try:
        values = [int(n) for n in numbers]
    except ValueError:
        print(f"error: --target {text!r}: priority and weight are whole numbers",
              file=sys.stderr)
        raise SystemExit(Exit.USAGE) from None
    target = route_pb2.PbxTarget(uri=uri)
    if values:
        target.priority = values[0]
    if len(values) > 1:
        target.weight = values[1]
    return target


def _print(pbx: route_pb2.PbxAccess, args: argparse.Namespace) -> int:
    if args.json:
        print_json(pbx)
        return 0
    targets = [f"{t.uri} (priority {t.priority}, weight {t.weight})" for t in pbx.targets]
    fields([
        ("tenant", pbx.tenant),
        ("source networks", ", ".join(pbx.source_cidrs) or "none: no PBX may send calls"),
        ("digest", f"{pbx.username}, password set" if pbx.username else "none (address alone)"),
        ("targets", "; ".join(targets) or "none: inbound calls have nowhere to go"),
        ("enabled", "yes" if pbx.enabled else "no"),
        ("version", f"{pbx.version} (etag {pbx.etag})"),
    ])
    return 0


def list_calls(client: Client, args: argparse.Namespace) -> int:
    request = trunk_pb2.ListCallsRequest(
        tenant=client.tenant, direction=args.direction or "", trunk=args.trunk,
        number=args.number, final_code=args.code, page_size=args.limit,
        page_token=args.page_token)
    if args.since:
        request.start_time.FromDatetime(args.since)
    if args.until:
        request.end_time.FromDatetime(args.until)
    response = client.call(client.trunks.ListCalls, request)
    if args.json:
        print_json(response)
        return 0
    table(["started (utc)", "direction", "from", "to (sent)", "trunks tried", "code",
           "duration", "hung up by"], [_row(c) for c in response.calls])
    if response.next_page_token:
        print(f"more: --page-token {response.next_page_token}")
    return 0


def _row(c: trunk_pb2.CallRecord) -> tuple[object, ...]:
    tried = ", ".join(f"{a.trunk_name or a.trunk_id[:8]} {a.code or 'no answer'}"
                      for a in c.attempts) or "-"
    duration = "-"
    if c.HasField("answered_at"):
        duration = f"{c.ended_at.ToSeconds() - c.answered_at.ToSeconds()} s"
    return (c.started_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"), c.direction,
            c.caller_received, c.number_sent or c.number_received, tried,
            f"{c.final_code} {c.final_reason}".strip(), duration, c.hangup_by or "-")
