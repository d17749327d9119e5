"""`trunkplane alerts ...` (who is told, when, and what was sent) and `trunkplane capacity`
(each trunk's busiest moment per day against its limit)."""

from __future__ import annotations

import argparse
import sys

from infra.cli.client import Client
from infra.cli.output import fields, print_json, table
from trunkplane.v1 import alert_pb2, common_pb2

EXAMPLES = """examples:
  echo "$HOOK_SECRET" | trunkplane alerts channel set ops-hook \\
      --webhook https://hooks.example.com/trunkplane --secret-stdin
  echo "$SMTP_PASSWORD" | trunkplane alerts channel set ops-mail --smtp smtp.example.com:587 \\
      --username trunkplane --password-stdin --from trunkplane@example.com \\
      --to oncall@example.com
  trunkplane alerts channel list
  trunkplane alerts rules --set registration_failed.attempts=5 \\
      --set capacity.share=0.9 --reminder 7200
  trunkplane alerts list --limit 20"""
CAPACITY_EXAMPLES = """examples:
  trunkplane capacity              # the last 7 days
  trunkplane capacity --days 30 --json"""


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    channel = sub.add_parser("channel", help="where notifications go: webhooks and email")
    csub = channel.add_subparsers(dest="channel_action", required=True, metavar="ACTION")
    _register_set(csub.add_parser("set", help="create a channel or change what you name"))
    csub.add_parser("list", help="the channels (secrets shown only as set)").set_defaults(
        handler=list_channels)
    delete = csub.add_parser("delete", help="stop sending to a channel")
    delete.add_argument("name", help="the channel's name")
    _options_flags(delete)
    delete.set_defaults(handler=delete_channel)
    rules = sub.add_parser("rules", help="show the alert rules; --set changes them")
    rules.add_argument("--set", action="append", default=[], metavar="ALERT.SETTING=VALUE",
                       help="e.g. registration_failed.seconds=300, fraud.enabled=false; "
                            "repeat")
    rules.add_argument("--reminder", type=int, metavar="SECONDS",
                       help="how often a condition that stays true reminds")
    _options_flags(rules)
    rules.set_defaults(handler=alert_rules)
    listed = sub.add_parser("list", help="what was sent, to where, when, delivered or not")
    listed.add_argument("--limit", type=int, default=50, metavar="N",
                        help="the newest N notifications (at most 500)")
    listed.set_defaults(handler=list_notifications)


def register_capacity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=7, metavar="N",
                        help="the last N days (UTC), today included")
    parser.set_defaults(handler=capacity_report)


def _register_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the channel's name, e.g. ops-hook")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--webhook", metavar="URL", help="an https:// URL to POST to")
    kind.add_argument("--smtp", metavar="HOST:PORT",
                      help="an SMTP submission server (STARTTLS and AUTH are required)")
    parser.add_argument("--secret-stdin", action="store_true",
                        help="read the webhook's signing secret from stdin")
    parser.add_argument("--username", default="", help="SMTP user name")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the SMTP password from stdin")
    parser.add_argument("--from", dest="sender", default="", metavar="ADDRESS",
                        help="the email's sender")
    parser.add_argument("--to", action="append", default=[], metavar="ADDRESS",
                        help="a recipient; repeat")
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_true", default=None,
                       help="send to it (a new channel is enabled)")
    state.add_argument("--disable", dest="enabled", action="store_false",
                       help="keep it but send nothing")
    _options_flags(parser)
    parser.set_defaults(handler=set_channel)


def _options_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why: recorded in the history")
    parser.add_argument("--request-id", default="", metavar="ID",
                        help="makes a retry change nothing")


def _options(args: argparse.Namespace) -> common_pb2.CommandOptions:
    return common_pb2.CommandOptions(reason=args.reason, request_id=args.request_id)


def set_channel(client: Client, args: argparse.Namespace) -> int:
    secret = sys.stdin.readline().rstrip("\n") if (
        args.secret_stdin or args.password_stdin) else ""
    channel = alert_pb2.Channel(name=args.name, username=args.username, sender=args.sender,
                                recipients=args.to)
    if args.webhook:
        channel.kind, channel.url = "webhook", args.webhook
    elif args.smtp:
        channel.kind, channel.smtp_server = "email", args.smtp
    if args.secret_stdin:
        channel.secret = secret
    elif args.password_stdin:
        channel.password = secret
    if args.enabled is not None:
        channel.enabled = args.enabled
    answer = client.call(client.alerts.PutChannel, alert_pb2.PutChannelRequest(
        tenant=client.tenant, channel=channel, options=_options(args)))
    if args.json:
        print_json(answer)
    else:
        _show_channel(answer)
    return 0


def _target(c: alert_pb2.Channel) -> str:
    if c.kind == "webhook":
        return c.url
    return f"{c.smtp_server} -> {', '.join(c.recipients)}"


def _show_channel(c: alert_pb2.Channel) -> None:
    secret = c.secret_set if c.kind == "webhook" else c.password_set
    fields([("channel", c.name), ("kind", c.kind), ("to", _target(c)),
            ("secret" if c.kind == "webhook" else "password", "(set)" if secret else "-"),
            ("enabled", "yes" if c.enabled else "no")])


def list_channels(client: Client, args: argparse.Namespace) -> int:
    answer = client.call(client.alerts.ListChannels,
                         alert_pb2.ListChannelsRequest(tenant=client.tenant))
    if args.json:
        print_json(answer)
        return 0
    table(["channel", "kind", "to", "enabled"],
          [(c.name, c.kind, _target(c), "yes" if c.enabled else "no") for c in answer.channels])
    return 0


def delete_channel(client: Client, args: argparse.Namespace) -> int:
    client.call(client.alerts.DeleteChannel, alert_pb2.DeleteChannelRequest(
        tenant=client.tenant, name=args.name, options=_options(args)))
    print(f"deleted channel {args.name}")
    return 0


def _rule_changes(pairs: list[str]) -> list[alert_pb2.AlertRule]:
    rules: dict[str, alert_pb2.AlertRule] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        alert, _, setting = name.partition(".")
        rule = rules.setdefault(alert, alert_pb2.AlertRule(alert=alert))
        if setting == "enabled":
            rule.enabled = value.lower() in ("true", "yes", "on", "1")
        elif setting == "share":
            rule.share = float(value)
        elif setting in ("attempts", "seconds", "events"):
            setattr(rule, setting, int(value))
        else:
            raise SystemExit(f"--set {pair}: the settings are enabled, attempts, seconds, "
                             "share and events")
    return list(rules.values())


def alert_rules(client: Client, args: argparse.Namespace) -> int:
    if args.set or args.reminder is not None:
        request = alert_pb2.UpdateAlertRulesRequest(
            tenant=client.tenant, rules=_rule_changes(args.set), options=_options(args))
        if args.reminder is not None:
            request.reminder_seconds = args.reminder
        answer = client.call(client.alerts.UpdateAlertRules, request)
    else:
        answer = client.call(client.alerts.GetAlertRules,
                             alert_pb2.GetAlertRulesRequest(tenant=client.tenant))
    if args.json:
        print_json(answer)
        return 0
    rows = [(r.alert, "on" if r.enabled else "off",
             ", ".join(f"{k}={getattr(r, k):g}" for k in ("attempts", "seconds", "share",
                                                          "events") if r.HasField(k)))
            for r in answer.rules]
    table(["alert", "state", "thresholds"], rows)
    print(f"reminders every {answer.reminder_seconds} s while a condition holds")
    return 0


def list_notifications(client: Client, args: argparse.Namespace) -> int:
    answer = client.call(client.alerts.ListNotifications, alert_pb2.ListNotificationsRequest(
        tenant=client.tenant, page_size=args.limit))
    if args.json:
        print_json(answer)
        return 0
    rows = []
    for n in answer.notifications:
        sent = "; ".join(f"{d.channel}: {d.state} after {d.attempts}" for d in n.deliveries)
        rows.append((n.created_at[:19].replace("T", " "), n.type, n.title, sent or "-"))
    table(["when (utc)", "type", "what", "deliveries"], rows)
    return 0


def capacity_report(client: Client, args: argparse.Namespace) -> int:
    answer = client.call(client.alerts.GetCapacityReport, alert_pb2.GetCapacityReportRequest(
        tenant=client.tenant, days=args.days))
    if args.json:
        print_json(answer)
        return 0
    table(["day", "trunk", "peak calls", "limit", "advice (peak + 20%)"],
          [(r.day, r.trunk_name, r.peak_calls, r.limit or "none", r.advice)
           for r in answer.rows])
    return 0
