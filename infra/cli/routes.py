"""`trunkplane route ...`"""

from __future__ import annotations

import argparse

from domain.dialplan import DialPattern
from domain.routes import Strategy
from infra.cli.client import Client
from infra.cli.flags import Flag, add_flags, apply_flags
from infra.cli.output import fields, print_json, table
from infra.cli.trunks import print_history
from trunkplane.v1 import common_pb2, route_pb2, trunk_pb2

GUARD = [  # the toll-fraud guard, of a route or of the tenant (`route policy`)
    Flag("--max-per-minute", "max_calls_per_minute", "int", help="new calls a minute; 0: none"),
    Flag("--allow-prefix", "allow_prefixes", "list",
         help="only numbers starting with it, e.g. +1; repeat"),
    Flag("--block-prefix", "block_prefixes", "list", help="refuse numbers starting with it, "
         "e.g. +882 or 1900; repeat"),
    Flag("--daily-cap", "daily_cap", "int", help="outbound calls a day (UTC); 0: none"),
]
OUTBOUND = [
    Flag("--strategy", "strategy", help="failover | spread | weighted"),
    Flag("--allow", "allowed_extensions", "list", help="extension pattern; repeat"),
    Flag("--description", "description", help="free text for people"),
    Flag("--enabled", "enabled", "onoff", help="off: kept, but matches no call"),
    *[Flag(f.flag, f"guard.{f.path}", f.kind, help=f.help) for f in GUARD],
]
INBOUND = [
    Flag("--did", "did_pattern", help="DID or pattern; empty = any"),
    Flag("--cid", "caller_id_pattern", help="caller ID pattern; empty = any"),
    Flag("--trunk", "trunk_id", help="only calls arriving on this trunk (id or name)"),
    Flag("--destination", "destination", help="ext:1001, ivr:main, queue:support, hangup"),
    Flag("--description", "description", help="free text for people"),
    Flag("--enabled", "enabled", "onoff", help="off: kept, but matches no call"),
]
EXAMPLES = """examples:
  trunkplane route outbound create US --pattern '1+9|NXXNXXXXXX' --trunk voco \\
      --trunk carrier --allow 1XXX
  trunkplane route inbound create --did 15551234567 --destination ivr:main
  trunkplane route resolve 92125551234 --from 1001
  trunkplane route policy --block-prefix +882 --daily-cap 500"""


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    _outbound(sub.add_parser("outbound", help="routes for calls to the network",
                             epilog=EXAMPLES))
    _inbound(sub.add_parser("inbound", help="routes for calls from the network",
                            epilog=EXAMPLES))
    resolve = sub.add_parser("resolve", help="which trunks would carry this number")
    resolve.add_argument("number", help="the number as the extension dials it")
    resolve.add_argument("--from", dest="extension", default="", metavar="EXTENSION",
                         help="calling extension")
    resolve.set_defaults(handler=resolve_outbound)
    policy = sub.add_parser("policy", help="the tenant's toll-fraud guard (all routes) and "
                                           "business hours (calls outside them alert)",
                            epilog=EXAMPLES)
    add_flags(policy, GUARD)
    policy.add_argument("--hours", metavar="HH:MM-HH:MM",
                        help="business hours HH:MM-HH:MM; 'none' removes them")
    policy.add_argument("--days", metavar="DAYS",
                        help="business days, e.g. mon,tue,wed,thu,fri")
    policy.add_argument("--timezone", metavar="ZONE",
                        help="IANA time zone of the hours, e.g. Europe/Berlin")
    _options(policy)
    policy.set_defaults(handler=tenant_policy)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", metavar="TEXT",
                        help="why; recorded in the history")
    parser.add_argument("--request-id", default="", metavar="ID",
                        help="makes a retry change nothing")


def _outbound(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("create", "create an outbound route"),
                         ("update", "change the fields given, nothing else")):
        p = sub.add_parser(action, help=text, epilog=EXAMPLES)
        if action == "create":
            p.add_argument("name", help="unique in the tenant, ignoring case")
        else:
            p.add_argument("route", help="id or name")
            p.add_argument("--name", dest="new_name", metavar="NAME", help="rename")
            p.add_argument("--etag", default="",
                           help="fail if the route changed since this etag")
        p.add_argument("--pattern", action="append", metavar="PATTERN",
                       help="dial pattern, FreePBX form prepend+prefix|match; repeat")
        p.add_argument("--trunk", action="append", metavar="TRUNK[:WEIGHT]",
                       help="trunk id or name[:weight]; repeat, in order")
        p.add_argument("--position", type=int, metavar="N",
                       help="1-based place in the route order")
        add_flags(p, OUTBOUND)
        _options(p)
        p.set_defaults(handler=save_outbound)
    _common(sub, "outbound")


def _inbound(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create an inbound route", epilog=EXAMPLES)
    add_flags(create, INBOUND)
    _options(create)
    create.set_defaults(handler=save_inbound, route=None)
    update = sub.add_parser("update", help="change the fields given, nothing else")
    update.add_argument("route", help="id")
    update.add_argument("--etag", default="", help="fail if the route changed since this etag")
    add_flags(update, INBOUND)
    _options(update)
    update.set_defaults(handler=save_inbound)
    _common(sub, "inbound")


def _common(sub: argparse._SubParsersAction[argparse.ArgumentParser], kind: str) -> None:
    sub.add_parser("list", help=f"every {kind} route").set_defaults(
        handler=list_routes, kind=kind)
    for action, handler, text in (("get", get_route, "show one route"),
                                  ("delete", delete_route, "delete a route"),
                                  ("history", route_history, "every change, who and why")):
        p = sub.add_parser(action, help=text)
        p.add_argument("route", help="id" if kind == "inbound" else "id or name")
        if action == "delete":
            p.add_argument("--etag", default="",
                           help="fail if the route changed since this etag")
            _options(p)
        p.set_defaults(handler=handler, kind=kind)


def trunk_names(client: Client) -> dict[str, str]:
    """Trunk id -> name, so people read names where the API gives ids."""
    listed = client.call(client.trunks.ListTrunks, trunk_pb2.ListTrunksRequest(
        tenant=client.tenant, page_size=500))
    return {t.id: t.name for t in listed.trunks}


def named(text: str, names: dict[str, str]) -> str:
    for trunk_id, name in names.items():
        text = text.replace(trunk_id, name)
    return text


def _trunks(items: list[str]) -> list[route_pb2.RouteTrunk]:
    trunks = []
    for item in items:
        name, _, weight = item.rpartition(":") if item.rpartition(":")[2].isdigit() else (
            item, "", "")
        trunks.append(route_pb2.RouteTrunk(trunk_id=name, weight=int(weight or 0)))
    return trunks


def save_outbound(client: Client, args: argparse.Namespace) -> int:
    route = route_pb2.OutboundRoute()
    paths = apply_flags(route, args, OUTBOUND)
    if getattr(args, "name", None):
        route.name = args.name
    if getattr(args, "new_name", None):
        route.name = args.new_name
        paths.append("name")
    if args.pattern:
        route.dial_patterns.extend(
            route_pb2.DialPattern(**vars(DialPattern.parse(p))) for p in args.pattern)
        paths.append("dial_patterns")
    if args.trunk:
        route.trunks.extend(_trunks(args.trunk))
        paths.append("trunks")
    if args.position is not None:
        route.position = args.position
        paths.append("position")
    options = common_pb2.CommandOptions(reason=args.reason, request_id=args.request_id)
    if args.action == "create":
        response = client.call(client.routes.CreateOutboundRoute,
                               route_pb2.CreateOutboundRouteRequest(
                                   tenant=client.tenant, route=route, options=options))
    else:
        request = route_pb2.UpdateOutboundRouteRequest(
            tenant=client.tenant, route=args.route, changes=route, etag=args.etag,
            options=options)
        request.update_mask.paths.extend(paths)
        response = client.call(client.routes.UpdateOutboundRoute, request)
    return _show(args, response, response.route, "outbound", client)


def save_inbound(client: Client, args: argparse.Namespace) -> int:
    route = route_pb2.InboundRoute()
    paths = apply_flags(route, args, INBOUND)
    options = common_pb2.CommandOptions(reason=args.reason, request_id=args.request_id)
    if args.route is None:
        response = client.call(client.routes.CreateInboundRoute,
                               route_pb2.CreateInboundRouteRequest(
                                   tenant=client.tenant, route=route, options=options))
    else:
        request = route_pb2.UpdateInboundRouteRequest(
            tenant=client.tenant, route=args.route, changes=route, etag=args.etag,
            options=options)
        request.update_mask.paths.extend(paths)
        response = client.call(client.routes.UpdateInboundRoute, request)
    return _show(args, response, response.route, "inbound", client)


def list_routes(client: Client, args: argparse.Namespace) -> int:
    request = route_pb2.ListRoutesRequest(tenant=client.tenant)
    if args.kind == "outbound":
        out = client.call(client.routes.ListOutboundRoutes, request)
        if args.json:
            print_json(out)
            return 0
        table(["#", "name", "patterns", "trunks", "strategy", "allowed", "enabled", "id"], [
            (r.position, r.name, " ".join(_pattern(p) for p in r.dial_patterns),
             ",".join(t.trunk_name or t.trunk_id for t in r.trunks), r.strategy,
             ",".join(r.allowed_extensions) or "all", "yes" if r.enabled else "no", r.id)
            for r in out.routes])
        return 0
    inbound = client.call(client.routes.ListInboundRoutes, request)
    if args.json:
        print_json(inbound)
        return 0
    names = trunk_names(client)
    table(["did", "caller id", "trunk", "destination", "enabled", "id"], [
        (r.did_pattern or "any", r.caller_id_pattern or "any",
         names.get(r.trunk_id, r.trunk_id) or "any",
         r.destination, "yes" if r.enabled else "no", r.id) for r in inbound.routes])
    return 0


def get_route(client: Client, args: argparse.Namespace) -> int:
    request = route_pb2.GetRouteRequest(tenant=client.tenant, route=args.route)
    if args.kind == "outbound":
        route = client.call(client.routes.GetOutboundRoute, request)
    else:
        route = client.call(client.routes.GetInboundRoute, request)
    return _show(args, route, route, args.kind, client)


def delete_route(client: Client, args: argparse.Namespace) -> int:
    request = route_pb2.DeleteRouteRequest(
        tenant=client.tenant, route=args.route, etag=args.etag,
        options=common_pb2.CommandOptions(reason=args.reason, request_id=args.request_id))
    method = (client.routes.DeleteOutboundRoute if args.kind == "outbound"
              else client.routes.DeleteInboundRoute)
    response = client.call(method, request)
    if args.json:
        print_json(response)
    else:
        print(f"deleted {args.kind} route {response.route.id}")
    return 0


def route_history(client: Client, args: argparse.Namespace) -> int:
    response = client.call(client.routes.GetRouteHistory,
                           route_pb2.GetRouteRequest(tenant=client.tenant, route=args.route))
    if args.json:
        print_json(response)
    else:
        print_history(response.entries, trunk_names(client))
    return 0


def resolve_outbound(client: Client, args: argparse.Namespace) -> int:
    response = client.call(client.routes.ResolveOutbound, route_pb2.ResolveOutboundRequest(
        tenant=client.tenant, number=args.number, extension=args.extension))
    if args.json:
        print_json(response)
        return 0
    fields([("route", response.route_name), ("pattern", _pattern(response.matched_pattern)),
            ("number sent", response.number), ("strategy", response.strategy)])
    table(["order", "trunk", "weight", "id"], [
        (i + 1, c.trunk_name, c.weight, c.trunk_id) for i, c in enumerate(response.candidates)])
    for text in response.skipped:
        print(f"skipped {text}")
    return 0


def _pattern(p: route_pb2.DialPattern) -> str:
    return str(DialPattern(match=p.match, prefix=p.prefix, prepend=p.prepend))


def _show(args: argparse.Namespace, response: object, route: object, kind: str,
          client: Client) -> int:
    if args.json:
        print_json(response)  # type: ignore[arg-type]
        return 0
    if kind == "outbound":
        r: route_pb2.OutboundRoute = route  # type: ignore[assignment]
        fields([("id", r.id), ("name", r.name), ("position", r.position),
                ("patterns", " ".join(_pattern(p) for p in r.dial_patterns)),
                ("trunks", ", ".join(f"{t.trunk_name or t.trunk_id}" + (
                    f" (weight {t.weight})" if r.strategy == Strategy.WEIGHTED else "")
                    for t in r.trunks)),
                ("strategy", r.strategy),
                ("allowed", ", ".join(r.allowed_extensions) or "every extension"),
                *[(f"guard: {k}", v) for k, v in guard_rows(r.guard)],
                ("enabled", "yes" if r.enabled else "no"), ("description", r.description),
                ("version", f"{r.version} (etag {r.etag})")])
    else:
        i: route_pb2.InboundRoute = route  # type: ignore[assignment]
        fields([("id", i.id), ("did", i.did_pattern or "any"),
                ("caller id", i.caller_id_pattern or "any"),
                ("trunk", trunk_names(client).get(i.trunk_id, i.trunk_id) or "any"),
                ("destination", i.destination), ("enabled", "yes" if i.enabled else "no"),
                ("description", i.description), ("version", f"{i.version} (etag {i.etag})")])
    return 0


def tenant_policy(client: Client, args: argparse.Namespace) -> int:
    """Shows the tenant's guard; with flags, changes what they name first."""
    policy = route_pb2.TenantPolicy()
    paths = [f"guard.{p}" for p in apply_flags(policy.guard, args, GUARD)]
    if args.hours or args.days or args.timezone:
        current = client.call(client.routes.GetTenantPolicy, route_pb2.GetTenantPolicyRequest(
            tenant=client.tenant)).business_hours
        hours = route_pb2.BusinessHours()
        if args.hours != "none":
            start, _, end = (args.hours or f"{current.start}-{current.end}").partition("-")
            hours = route_pb2.BusinessHours(
                timezone=args.timezone or current.timezone or "UTC",
                days=(args.days.split(",") if args.days else list(current.days)),
                start=start, end=end)
        policy.business_hours.CopyFrom(hours)
        paths.append("business_hours")
    if paths:
        request = route_pb2.UpdateTenantPolicyRequest(
            tenant=client.tenant, policy=policy, options=common_pb2.CommandOptions(
                reason=args.reason, request_id=args.request_id))
        request.update_mask.paths.extend(paths)
        shown = client.call(client.routes.UpdateTenantPolicy, request)
    else:
        shown = client.call(client.routes.GetTenantPolicy,
                            route_pb2.GetTenantPolicyRequest(tenant=client.tenant))
    if args.json:
        print_json(shown)
        return 0
    fields([*guard_rows(shown.guard), ("business hours", hours_text(shown))])
    return 0


def hours_text(policy: route_pb2.TenantPolicy) -> str:
    if not policy.HasField("business_hours"):
        return "none (no after-hours alerts)"
    h = policy.business_hours
    return f"{','.join(h.days)} {h.start}-{h.end} {h.timezone}"


def guard_rows(guard: route_pb2.CallGuard) -> list[tuple[str, object]]:
    return [
        ("max calls a minute", guard.max_calls_per_minute or "no limit"),
        ("allowed prefixes", ", ".join(guard.allow_prefixes) or "every number"),
        ("blocked prefixes", ", ".join(guard.block_prefixes) or "none"),
        ("daily cap", guard.daily_cap or "none"),
    ]
