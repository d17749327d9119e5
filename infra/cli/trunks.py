"""`trunkplane trunk ...`"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import grpc

from infra.cli.client import Client, report
from infra.cli.flags import Flag, add_flags, apply_flags
from infra.cli.output import (
    as_dict,
    fields,
    is_terminal,
    print_json,
    state_colour,
    table,
    warn,
)
from trunkplane.v1 import audit_pb2, audit_pb2_grpc, common_pb2, trunk_pb2

SETTINGS = [
    Flag("--type", "type", help="register | peer | account"),
    Flag("--host", "host", help="provider host[:port]"),
    Flag("--transport", "transport", help="udp | tcp | tls (default udp)"),
    Flag("--outbound-proxy", "outbound_proxy", help="proxy host[:port] every request goes "
                                                    "through (a Route with ;lr); '' for none"),
    Flag("--username", "username", help="the account's user name at the provider"),
    Flag("--auth-id", "auth_id", help="authentication id, when not the username (account "
                                      "trunks)"),
    Flag("--max-registrations", "max_registrations", "int", help="account trunks: 1-100"),
    Flag("--from-user", "from_user", help="user part of From (default: the username)"),
    Flag("--from-domain", "from_domain", help="domain of From (default: the host)"),
    Flag("--peer", "peer_addresses", "list", help="provider IP[:port]; repeat in failover order"),
    Flag("--codecs", "codecs", "csv", help="ordered, e.g. PCMU,PCMA,OPUS (default PCMU,PCMA "
                                           "or the template's); ulaw, alaw and 'G.711u (PCMU)' "
                                           "spellings are accepted"),
    Flag("--dtmf", "dtmf_mode", help="rfc2833 | info | inband (default rfc2833)"),
    Flag("--nat", "nat.enabled", "onoff", help="rewrite Contact/Via for an agent behind NAT"),
    Flag("--external-ip", "nat.external_ip", help="the public IP the provider sees (NAT)"),
    Flag("--local-network", "nat.local_networks", "list", help="CIDR not behind the NAT; "
                                                               "repeat"),
    Flag("--stun", "nat.stun_server", help="STUN host[:port] to learn the public IP (NAT)"),
    Flag("--max-calls", "call_limits.max_concurrent_calls", "int",
         help="calls at once, both directions; 9999 = unlimited"),
    Flag("--max-inbound", "call_limits.max_inbound_calls", "int",
         help="inbound calls at once, at most --max-calls"),
    Flag("--max-outbound", "call_limits.max_outbound_calls", "int",
         help="outbound calls at once, at most --max-calls"),
    Flag("--description", "description", help="free text for people"),
    Flag("--enabled", "enabled", "onoff", help="off: kept, but not registered nor used"),
    Flag("--registration-expiry", "timers.registration_expiry", "int",
         help="seconds asked of the registrar, 10-86400 (default: the agent's, 3600)"),
    Flag("--backoff-base", "timers.backoff_base", "int",
         help="first wait after a failed registration, seconds (default: the agent's, 30)"),
    Flag("--backoff-cap", "timers.backoff_cap", "int",
         help="longest wait between failed attempts, seconds (default: the agent's, 1800)"),
    Flag("--qualify", "timers.qualify", "onoff",
         help="OPTIONS to a register/account trunk's registrar (default on)"),
    Flag("--options-interval", "timers.options_interval", "int",
         help="seconds between OPTIONS (default: the agent's, 30)"),
    Flag("--down-after", "timers.down_after", "int",
         help="OPTIONS missed in a row before unreachable (default: the agent's, 2)"),
    Flag("--up-after", "timers.up_after", "int",
         help="good answers in a row before up again (default: the agent's, 1)"),
    Flag("--failover-after", "timers.failover_after", "int",
         help="seconds without an answer from one of a provider's servers (RFC 3263) "
              "before the next, 1-32 (default: the agent's, 4)"),
    Flag("--ok-code", "timers.ok_codes", "list",
         help="an answer to OPTIONS that means up: a code (404) or class (2xx); repeat "
              "(default 2xx)"),
    Flag("--client-cert", "client_certificate", "file",
         help="PEM file: TLS client certificate (then its chain) presented to the "
              "provider; '' removes it"),
    Flag("--client-key", "client_key", "file",
         help="PEM file: its private key, unencrypted (stored encrypted, never shown)"),
]
EXAMPLES = """examples:
  echo "$PASSWORD" | trunkplane trunk create voco --template thevoco --username 1001 \\
      --password-stdin --reason "ticket OPS-12"
  trunkplane trunk create carrier --type peer --peer 192.0.2.10 --peer 192.0.2.11:5080
  trunkplane trunk update voco --codecs "G.711u (PCMU),alaw" --max-outbound 4
  trunkplane trunk status            # every trunk; `trunk status voco` for one in detail
  trunkplane trunk history voco --json"""


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create a trunk", epilog=EXAMPLES)
    create.add_argument("name", help="unique in the tenant, ignoring case")
    create.add_argument("--template", default="", metavar="ID",
                        help="start from a provider template (see `trunk templates`)")
    _command_options(create)
    _password_flags(create)
    add_flags(create, SETTINGS)
    create.set_defaults(handler=create_trunk)

    update = sub.add_parser("update", help="change the fields given, nothing else")
    update.add_argument("trunk", help="id or name")
    update.add_argument("--name", dest="set_name", metavar="NAME", help="rename")
    update.add_argument("--etag", default="", help="fail if the trunk changed since this etag")
    _command_options(update)
    _password_flags(update)
    add_flags(update, SETTINGS)
    update.set_defaults(handler=update_trunk)

    for name, handler, text in (("get", get_trunk, "show one trunk"),
                                ("delete", delete_trunk, "delete a trunk no route uses"),
                                ("history", trunk_history, "every change, who and why "
                                                           "(deleted trunks: by id)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("trunk", help="id or name")
        if name == "delete":
            p.add_argument("--etag", default="",
                           help="fail if the trunk changed since this etag")
            _command_options(p)
        p.set_defaults(handler=handler)

    listing = sub.add_parser("list", help="list trunks by name")
    listing.add_argument("--type", default="", help="only register, peer or account trunks")
    listing.add_argument("--enabled", choices=("yes", "no"), help="only enabled or disabled")
    listing.add_argument("--page-size", type=int, default=0, metavar="N",
                         help="trunks per page, 1-500 (default 50)")
    listing.add_argument("--page-token", default="", metavar="TOKEN",
                         help="the next page, as the previous page said")
    listing.set_defaults(handler=list_trunks)
    sub.add_parser("templates", help="provider templates").set_defaults(handler=templates)
    status = sub.add_parser("status", help="what the agents observe of each trunk, or of "
                                           "one in detail")
    status.add_argument("trunk", nargs="?", default="",
                        help="id or name: contacts, expiry, each peer address with its "
                             "round trip, recent alerts")
    status.add_argument("--type", default="", help="only register, peer or account trunks")
    status.add_argument("--watch", action="store_true",
                        help="keep the table live (redrawn on each change)")
    status.set_defaults(handler=trunk_status)


def _command_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", metavar="TEXT",
                        help="why; recorded in the history")
    parser.add_argument("--request-id", default="", metavar="ID",
                        help="makes a retry change nothing")


def _password_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password", metavar="SECRET",
                       help="visible to other local users; prefer --password-stdin")
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
    try:
        response = client.call(client.trunks.GetTrunkHistory, trunk_pb2.GetTrunkHistoryRequest(
            tenant=client.tenant, trunk=args.trunk))
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            status = report(error, client, args.json)
            for line in deleted_hint(client, args.trunk):
                print(f"  {line}", file=sys.stderr)
            return status
        raise
    if args.json:
        print_json(response)
        return 0
    print_history(response.entries)
    return 0


def deleted_hint(client: Client, name: str) -> list[str]:
    """A deleted trunk keeps its history under its id: find the ids that had this name."""
    request = audit_pb2.ListChangesRequest(page_size=1000, filter=audit_pb2.ChangeFilter(
        tenant=client.tenant, event_type="TrunkDeleted"))
    try:
        page = client.call(audit_pb2_grpc.AuditServiceStub(client.channel).ListChanges,
                           request)
    except grpc.RpcError:  # e.g. an operator, who may not read the audit trail
        return ["a deleted trunk keeps its history under its id: `trunkplane audit list "
                "--type TrunkDeleted` shows it, then `trunkplane trunk history ID`"]
    ids = [c.subject_id for c in page.changes
           if c.subject_name.casefold() == name.strip().casefold()]
    return [f"trunk '{name}' was deleted; its history: trunkplane trunk history {i}"
            for i in ids]


def print_history(entries: object, names: dict[str, str] | None = None) -> None:
    """names: trunk id -> name, to show names in values that hold trunk ids."""
    rows = []
    for e in entries:  # type: ignore[attr-defined]
        when = e.time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
        changes = "; ".join(f"{c.field}: {_value(c.old_value, names)} -> "
                            f"{_value(c.new_value, names)}" for c in e.changes)
        rows.append((e.version, when, e.actor, e.event_type, e.reason, changes))
    table(["version", "time (utc)", "actor", "event", "reason", "changes"], rows)


def _value(text: str, names: dict[str, str] | None) -> str:
    """A history value for people: a route's trunk list as `voco, carrier (weight 2)`
    rather than the JSON of ids it is stored as."""
    if not text:
        return "-"
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, list) and all(isinstance(v, dict) and "trunk_id" in v for v in value):
        return ", ".join((names or {}).get(v["trunk_id"], v["trunk_id"]) + (
            f" (weight {v['weight']})" if v.get("weight", 1) != 1 else "") for v in value)
    return text


def trunk_status(client: Client, args: argparse.Namespace) -> int:
    if args.watch:
        return watch_status(client, args)
    if args.trunk:
        one = client.call(client.trunks.GetTrunkStatus, trunk_pb2.GetTrunkRequest(
            tenant=client.tenant, trunk=args.trunk))
        if args.json:
            print_json(one)
        else:
            status_detail(one)
        return 0
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
    """At a terminal the table is drawn over the last one; piped, each redraw follows the
    last, so a log of the changes remains."""
    if is_terminal():
        print("\x1b[H\x1b[2J", end="")
    print(time.strftime("%H:%M:%S"))
    status_table(sorted(statuses, key=lambda s: s.trunk_name.casefold()))
    print(flush=True)


def _time(stamp: Any) -> str:
    return str(stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"))


def state_text(s: trunk_pb2.TrunkStatus) -> str:
    if s.stale:
        return f"stale ({s.state}, last reported {_time(s.observed_at)})"
    return s.state


def status_table(statuses: list[trunk_pb2.TrunkStatus]) -> None:
    rows = []
    for s in statuses:
        reported = s.HasField("observed_at")
        registrations = (f"{s.registrations_up if reported else '?'}/{s.registrations_wanted}"
                         if s.type != "peer" else "-")
        peers = (f"{sum(p.up for p in s.peers)}/{len(s.peers)}"
                 if s.type == "peer" and reported else "-")
        calls = f"{s.active_inbound + s.active_outbound}/" + _limit(s.call_limits,
                                                                   "max_concurrent_calls")
        since = _time(s.since) if s.HasField("since") else "-"
        alert = s.alerts[-1] if s.alerts else "-"
        rows.append((s.trunk_name, s.type, state_text(s), s.sip_code or "-", s.reason or "-",
                     registrations, peers, calls, since, alert))
    table(["name", "type", "state", "code", "reason", "registrations", "peers up", "calls",
           "since (utc)", "last fraud alert"], rows, colour={2: state_colour})


def status_detail(s: trunk_pb2.TrunkStatus) -> None:
    reported = s.HasField("observed_at")
    rows: list[tuple[str, object]] = [
        ("trunk", f"{s.trunk_name} ({s.type}, {'enabled' if s.enabled else 'disabled'})"),
        ("state", state_colour(state_text(s))),
        ("since (utc)", _time(s.since) if s.HasField("since") else "-"),
        ("provider said", f"{s.sip_code} {s.reason}".strip() if s.sip_code else "-"),
        ("target", s.target or "-"),
        ("reported by", f"{s.agent_id} at {_time(s.observed_at)}" if reported else
         "no agent yet"),
        ("calls in/out", f"{s.active_inbound}/{s.active_outbound} of "
                         f"{_limit(s.call_limits, 'max_concurrent_calls')}"),
    ]
    if s.type != "peer":
        rows.append(("registrations", f"{s.registrations_up}/{s.registrations_wanted}"))
        rows += [(f"contact {i + 1}", f"{c.uri}, expires "
                  f"{_time(c.expires_at) if c.HasField('expires_at') else '-'}")
                 for i, c in enumerate(s.contacts)]
    label = "peer" if s.type == "peer" else "qualify"
    rows += [(f"{label} {p.address}", f"{'up' if p.up else 'down'}, round trip "
              f"{f'{p.rtt_ms:.1f} ms' if p.up else '-'}, since {_time(p.since)}")
             for p in s.peers]
    rows += [(f"alert {i + 1}", text) for i, text in enumerate(s.alerts)] or [
        ("alerts", "none")]
    fields(rows)


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
        ("transport", t.transport), ("outbound proxy", t.outbound_proxy or "-"),
        ("enabled", "yes" if t.enabled else "no"),
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
        ("timers", timers_text(t)),
    ]
    if t.client_certificate:
        expires = (t.client_certificate_expires.ToDatetime().strftime("%Y-%m-%d %H:%M")
                   if t.HasField("client_certificate_expires") else "?")
        rows.append(("client certificate", f"{t.client_certificate_subject or '?'}, expires "
                                           f"{expires} UTC, key "
                                           f"{'set' if t.client_key_set else 'not set'}"))
    rows += [("description", t.description), ("version", f"{t.version} (etag {t.etag})")]
    fields(rows)


def timers_text(t: trunk_pb2.Trunk) -> str:
    """The trunk's own timers; those left to the agent say so."""
    m = t.timers

    def value(name: str, unit: str = " s") -> str:
        return f"{getattr(m, name)}{unit}" if m.HasField(name) else "agent's"

    qualify = "off" if m.HasField("qualify") and not m.qualify else "on"
    return (f"expiry {value('registration_expiry')}, back-off {value('backoff_base')} to "
            f"{value('backoff_cap')}, qualify {qualify} every {value('options_interval')}, "
            f"down after {value('down_after', '')}, up after {value('up_after', '')}, ok "
            f"{','.join(m.ok_codes) or '2xx'}, next server after "
            f"{value('failover_after')}")
