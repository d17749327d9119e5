"""`trunkplane trunk ...`"""

from __future__ import annotations

import argparse
import json
import sys
import time

import grpc

from infra.cli.client import Client
from infra.cli.flags import Flag, add_flags, apply_flags
from infra.cli.output import as_dict, fields, print_json, table, warn
from trunkplane.v1 import common_pb2, trunk_pb2

SETTINGS = [
    Flag("--type", "type", help="register | peer | account"),
    Flag("--host", "host", help="provider host[:port]"),
    Flag("--transport", "transport", help="udp | tcp | tls"),
    Flag("--username", "username"),
    Flag("--auth-id", "auth_id", help="authentication id (account trunks)"),
    Flag("--max-registrations", "max_registrations", "int", help="account trunks: 1-100"),
    Flag("--from-user", "from_user"),
    Flag("--from-domain", "from_domain"),
    Flag("--peer", "peer_addresses", "list", help="provider IP[:port]; repeat in failover order"),
    Flag("--codecs", "codecs", "csv", help="ordered, e.g. PCMU,PCMA,OPUS"),
    Flag("--dtmf", "dtmf_mode", help="rfc2833 | info | inband"),
    Flag("--nat", "nat.enabled", "onoff"),
    Flag("--external-ip", "nat.external_ip"),
    Flag("--local-network", "nat.local_networks", "list", help="CIDR; repeat"),
    Flag("--stun", "nat.stun_server", help="host[:port]"),
    Flag("--max-calls", "call_limits.max_concurrent_calls", "int", help="9999 = unlimited"),
    Flag("--max-inbound", "call_limits.max_inbound_calls", "int"),
    Flag("--max-outbound", "call_limits.max_outbound_calls", "int"),
    Flag("--description", "description"),
    Flag("--enabled", "enabled", "onoff"),
]


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a trunk")
    create.add_argument("name")
    create.add_argument("--template", default="", help="start from a provider template")
    _command_options(create)
    _password_flags(create)
    add_flags(create, SETTINGS)
    create.set_defaults(handler=create_trunk)

    update = sub.add_parser("update", help="change the fields given, nothing else")
    update.add_argument("trunk", help="id or name")
    update.add_argument("--name", dest="set_name", help="rename")
    update.add_argument("--etag", default="", help="fail if the trunk changed since this etag")
    _command_options(update)
    _password_flags(update)
    add_flags(update, SETTINGS)
    update.set_defaults(handler=update_trunk)

    for name, handler, text in (("get", get_trunk, "show one trunk"),
                                ("delete", delete_trunk, "delete a trunk no route uses"),
                                ("history", trunk_history, "every change, who and why")):
        p = sub.add_parser(name, help=text)
        p.add_argument("trunk", help="id or name")
        if name == "delete":
            p.add_argument("--etag", default="")
            _command_options(p)
        p.set_defaults(handler=handler)

    listing = sub.add_parser("list", help="list trunks by name")
    listing.add_argument("--type", default="")
    listing.add_argument("--enabled", choices=("yes", "no"))
    listing.add_argument("--page-size", type=int, default=0)
    listing.add_argument("--page-token", default="")
    listing.set_defaults(handler=list_trunks)
    sub.add_parser("templates", help="provider templates").set_defaults(handler=templates)
    status = sub.add_parser("status", help="what the agents observe of each trunk")
    status.add_argument("--type", default="")
    status.add_argument("--watch", action="store_true", help="keep the table live")
    status.set_defaults(handler=trunk_status)


def _command_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why; recorded in the history")
    parser.add_argument("--request-id", default="", help="makes a retry change nothing")


def _password_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password", help="visible to other local users; prefer --password-stdin")
    group.add_argument("--password-stdin", action="store_true", help="read the password from stdin")


def _options(args: argparse.Namespace) -> common_pb2.CommandOptions:
    return common_pb2.CommandOptions(reason=args.reason, request_id=args.request_id)


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    password: str | None = args.password
    return password


def create_trunk(client: Client, args: argparse.Namespace) -> int:
    trunk = trunk_pb2.Trunk(name=args.name)
    apply_flags(trunk, args, SETTINGS)
    password = _password(args)
    if password is not None:
        trunk.password = password
    response = client.call(client.trunks.CreateTrunk, trunk_pb2.CreateTrunkRequest(
        tenant=client.tenant, trunk=trunk, template=args.template, options=_options(args)))
    return _show_response(response, args)


def update_trunk(client: Client, args: argparse.Namespace) -> int:
    changes = trunk_pb2.Trunk()
    paths = apply_flags(changes, args, [Flag("--name", "name"), *SETTINGS])
    password = _password(args)
    if password is not None:
        changes.password = password
        paths.append("password")
    request = trunk_pb2.UpdateTrunkRequest(tenant=client.tenant, trunk=args.trunk,
                                           changes=changes, etag=args.etag,
                                           options=_options(args))
    request.update_mask.paths.extend(paths)
    return _show_response(client.call(client.trunks.UpdateTrunk, request), args)


def delete_trunk(client: Client, args: argparse.Namespace) -> int:
    response = client.call(client.trunks.DeleteTrunk, trunk_pb2.DeleteTrunkRequest(
        tenant=client.tenant, trunk=args.trunk, etag=args.etag, options=_options(args)))
    if args.json:
        print_json(response)
    else:
        print(f"deleted trunk {response.trunk.name} ({response.trunk.id})")
    return 0


def get_trunk(client: Client, args: argparse.Namespace) -> int:
    trunk = client.call(client.trunks.GetTrunk,
                        trunk_pb2.GetTrunkRequest(tenant=client.tenant, trunk=args.trunk))
    if args.json:
        print_json(trunk)
    else:
        show_trunk(trunk)
    return 0


def list_trunks(client: Client, args: argparse.Namespace) -> int:
    request = trunk_pb2.ListTrunksRequest(tenant=client.tenant, page_size=args.page_size,
                                          page_token=args.page_token, type=args.type)
    if args.enabled:
        request.enabled = args.enabled == "yes"
    response = client.call(client.trunks.ListTrunks, request)
    if args.json:
        print_json(response)
        return 0
    table(["name", "type", "host", "transport", "enabled", "codecs", "calls", "id"], [
        (t.name, t.type, t.host, t.transport, "yes" if t.enabled else "no", ",".join(t.codecs),
         _limit(t.call_limits, "max_concurrent_calls"), t.id) for t in response.trunks])
    if response.next_page_token:
        print(f"more: --page-token {response.next_page_token}")
    return 0


def trunk_history(client: Client, args: argparse.Namespace) -> int:
    response = client.call(client.trunks.GetTrunkHistory, trunk_pb2.GetTrunkHistoryRequest(
        tenant=client.tenant, trunk=args.trunk))
    if args.json:
        print_json(response)
        return 0
    print_history(response.entries)
    return 0


def print_history(entries: object) -> None:
    rows = []
    for e in entries:  # type: ignore[attr-defined]
        when = e.time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
        changes = "; ".join(f"{c.field}: {c.old_value or '-'} -> {c.new_value or '-'}"
                            for c in e.changes)
        rows.append((e.version, when, e.actor, e.event_type, e.reason, changes))
    table(["version", "time (utc)", "actor", "event", "reason", "changes"], rows)


def trunk_status(client: Client, args: argparse.Namespace) -> int:
    if args.watch:
        return watch_status(client, args)
    response = client.call(client.trunks.ListTrunkStatuses, trunk_pb2.ListTrunksRequest(
        tenant=client.tenant, type=args.type, page_size=500))
    if args.json:
        print_json(response)
        return 0
    status_table(list(response.statuses))
    return 0


def watch_status(client: Client, args: argparse.Namespace) -> int:
    """Redraws the table on every change; reconnects where it left off if the server goes."""
    shown: dict[str, trunk_pb2.TrunkStatus] = {}
    position = 0
    while True:
        stream = client.trunks.WatchTrunkStatus(trunk_pb2.WatchTrunkStatusRequest(
            tenant=client.tenant, since_position=position), metadata=client.metadata())
        try:
            expected = _expected(client, args) if position == 0 else 0
            for change in stream:
                position = max(position, change.position)
                if not args.type or change.status.type == args.type:
                    shown[change.status.trunk_id] = change.status
                if args.json:
                    print(json.dumps(as_dict(change)), flush=True)
                elif not change.current or len(shown) >= expected:
                    _redraw(list(shown.values()))
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            print("server unavailable; reconnecting", file=sys.stderr)
            time.sleep(2)
        except KeyboardInterrupt:
            stream.cancel()
            return 0


def _expected(client: Client, args: argparse.Namespace) -> int:
    listed = client.call(client.trunks.ListTrunks, trunk_pb2.ListTrunksRequest(
        tenant=client.tenant, type=args.type, page_size=1))
    return int(listed.total_size)


def _redraw(statuses: list[trunk_pb2.TrunkStatus]) -> None:
    if sys.stdout.isatty():
        print("\x1b[H\x1b[2J", end="")
    print(time.strftime("%H:%M:%S"))
    status_table(sorted(statuses, key=lambda s: s.trunk_name.casefold()))
    print(flush=True)


def status_table(statuses: list[trunk_pb2.TrunkStatus]) -> None:
    rows = []
    for s in statuses:
        state = s.state + (f" ({s.sip_code} {s.reason})" if s.sip_code else "")
        reported = s.HasField("observed_at")
        registrations = (f"{s.registrations_up if reported else '?'}/{s.registrations_wanted}"
                         if s.type != "peer" else "-")
        peers = (f"{sum(p.up for p in s.peers)}/{len(s.peers)}"
                 if s.type == "peer" and reported else "-")
        calls = f"{s.active_inbound + s.active_outbound}/" + _limit(s.call_limits,
                                                                   "max_concurrent_calls")
        since = (s.since.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
                 if s.HasField("since") else "-")
        alert = s.alerts[-1] if s.alerts else "-"
        rows.append((s.trunk_name, s.type, state, registrations, peers, calls, since, alert))
    table(["name", "type", "state", "registrations", "peers up", "calls", "since (utc)",
           "last fraud alert"], rows)


def templates(client: Client, args: argparse.Namespace) -> int:
    response = client.call(client.trunks.ListProviderTemplates,
                           trunk_pb2.ListProviderTemplatesRequest())
    if args.json:
        print_json(response)
        return 0
    table(["id", "provider", "type", "host", "transports", "codecs"], [
        (t.id, t.display_name, t.defaults.type, t.defaults.host, ",".join(t.transports),
         ",".join(t.defaults.codecs)) for t in response.templates])
    return 0


def _show_response(response: trunk_pb2.TrunkResponse, args: argparse.Namespace) -> int:
    for text in response.warnings:
        warn(text)
    if args.json:
        print_json(response)
    else:
        show_trunk(response.trunk)
    return 0


def _limit(limits: trunk_pb2.CallLimits, name: str) -> str:
    return str(getattr(limits, name)) if limits.HasField(name) else "unlimited"


def show_trunk(t: trunk_pb2.Trunk) -> None:
    nat = "off"
    if t.nat.enabled:
        nat = f"on, external {t.nat.external_ip or '-'}, stun {t.nat.stun_server or '-'}"
    if t.nat.local_networks:
        nat += f", local {', '.join(t.nat.local_networks)}"
    rows: list[tuple[str, object]] = [
        ("id", t.id), ("name", t.name), ("type", t.type), ("host", t.host),
        ("transport", t.transport), ("enabled", "yes" if t.enabled else "no"),
    ]
    if t.type != "peer":
        rows += [("username", t.username), ("password", "set" if t.password_set else "not set"),
                 ("auth id", t.auth_id or "(username)")]
    if t.type == "account":
        rows.append(("registrations", t.max_registrations))
    if t.type == "peer":
        rows.append(("peer addresses", ", ".join(t.peer_addresses)))
    rows += [
        ("from", f"{t.from_user or '(username)'}@{t.from_domain or '(host)'}"),
        ("codecs", ", ".join(t.codecs)), ("dtmf", t.dtmf_mode), ("nat", nat),
        ("calls (total/in/out)", "/".join(_limit(t.call_limits, n) for n in (
            "max_concurrent_calls", "max_inbound_calls", "max_outbound_calls"))),
        ("description", t.description), ("version", f"{t.version} (etag {t.etag})"),
    ]
    fields(rows)
