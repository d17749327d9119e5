"""AlertService: channels and rules (commands on the bus, read back from the views with
secrets only as set/not set), the notifications kept by the notifier, the capacity report.
Thin: proto in, domain call, proto out."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import grpc

from domain import alerting
from domain.errors import ValidationError
from infra.grpc_api.convert import command_meta
from infra.grpc_api.errors import abort
from infra.grpc_api.servicer_base import ServicerBase
from infra.notify import capacity
from infra.notify.notifier import Notifier
from projections.db import Database
from trunkplane.v1 import alert_pb2, alert_pb2_grpc

Ctx = grpc.ServicerContext
MAX_PAGE = 500
SETTINGS = ("enabled", "attempts", "seconds", "share", "events")


class AlertServicer(alert_pb2_grpc.AlertServiceServicer):  # type: ignore[misc]
    def __init__(self, base: ServicerBase, notifier: Notifier | None, views: Database) -> None:
        self.base = base
        self.notifier = notifier
        self.views = views

    def PutChannel(self, request: alert_pb2.PutChannelRequest, context: Ctx) -> Any:
        tenant = self.base.tenant(context, request.tenant)
        raw = _channel_fields(request.channel)
        done = self.base.run(context, partial(alerting.put_channel, tenant=tenant, raw=raw,
                                              meta=command_meta(request, request.options)))
        self.base.ready(context, done.position)
        return self._channel(context, tenant, request.channel.name)

    def ListChannels(self, request: alert_pb2.ListChannelsRequest, context: Ctx) -> Any:
        tenant = self.base.tenant(context, request.tenant)
        self.base.ready(context, 0)
        docs = self.base.read(context, lambda: self.base.view.channel_docs(tenant))
        return alert_pb2.ListChannelsResponse(channels=[_message(d) for d in docs])

    def DeleteChannel(self, request: alert_pb2.DeleteChannelRequest, context: Ctx) -> Any:
        tenant = self.base.tenant(context, request.tenant)
        self.base.run(context, partial(alerting.delete_channel, tenant=tenant,
                                       name=request.name,
                                       meta=command_meta(request, request.options)))
        return alert_pb2.DeleteChannelResponse()

    def GetAlertRules(self, request: alert_pb2.GetAlertRulesRequest, context: Ctx) -> Any:
        tenant = self.base.tenant(context, request.tenant)
        found = self.base.bus.app.aggregate(alerting.AlertRules.id_for(tenant))
        settings = found.settings if isinstance(found, alerting.AlertRules) else (
            alerting.default_rules())
        return _rules_message(settings)

    def UpdateAlertRules(self, request: alert_pb2.UpdateAlertRulesRequest,
                         context: Ctx) -> Any:
        tenant = self.base.tenant(context, request.tenant)
        rules: dict[str, dict[str, Any]] = {}
        for rule in request.rules:
            rules.setdefault(rule.alert, {}).update(
                {name: getattr(rule, name) for name in SETTINGS if rule.HasField(name)})
        reminder = request.reminder_seconds if request.HasField("reminder_seconds") else None
        done = self.base.run(context, partial(
            alerting.update_alert_rules, tenant=tenant, rules=rules, reminder_seconds=reminder,
            meta=command_meta(request, request.options)))
        return _rules_message(done.unwrap().settings)

    def ListNotifications(self, request: alert_pb2.ListNotificationsRequest,
                          context: Ctx) -> Any:
        tenant = self.base.tenant(context, request.tenant)
        if not 0 <= request.page_size <= MAX_PAGE:
            abort(context, ValidationError.single("page_size", f"must be 0 to {MAX_PAGE}"))
        if self.notifier is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "the notifier is off here (TRUNKPLANE_NOTIFY=off)")
        notifier = self.notifier
        listed = self.base.read(context, lambda: notifier.listed(tenant,
                                                                 request.page_size or 50))
        return alert_pb2.ListNotificationsResponse(
            notifications=[_notification(doc) for doc in listed])

    def GetCapacityReport(self, request: alert_pb2.GetCapacityReportRequest,
                          context: Ctx) -> Any:
        tenant = self.base.tenant(context, request.tenant)
        if not 0 <= request.days <= 366:
            abort(context, ValidationError.single("days", "must be 0 (7) to 366"))
        rows = self.base.read(context, lambda: capacity.report(
            self.views, self.base.view, tenant, request.days or 7))
        return alert_pb2.CapacityReport(rows=[alert_pb2.CapacityRow(
            trunk_name=r.trunk_name, trunk_id=r.trunk_id, day=r.day, peak_calls=r.peak_calls,
            limit=r.limit, advice=r.advice) for r in rows])

    def _channel(self, context: Ctx, tenant: str, name: str) -> alert_pb2.Channel:
        docs = self.base.read(context, lambda: self.base.view.channel_docs(tenant))
        found = [d for d in docs if d["settings"]["name"] == name]
        return _message(found[0]) if found else alert_pb2.Channel(name=name)


def _channel_fields(channel: alert_pb2.Channel) -> dict[str, Any]:
    """What the request sets: a kind's fields, and a secret only when given."""
    raw: dict[str, Any] = {"name": channel.name}
    for name in ("kind", "url", "secret", "smtp_server", "username", "password", "sender"):
        if getattr(channel, name):
            raw[name] = getattr(channel, name)
    if channel.recipients:
        raw["recipients"] = list(channel.recipients)
    if channel.HasField("enabled"):
        raw["enabled"] = channel.enabled
    return raw


def _message(doc: dict[str, Any]) -> alert_pb2.Channel:
    s = doc["settings"]
    return alert_pb2.Channel(
        id=doc["id"], name=s["name"], kind=s["kind"], enabled=bool(s["enabled"]), url=s["url"],
        secret_set=bool(s["secret"]), smtp_server=s["smtp_server"], username=s["username"],
        password_set=bool(s["password"]), sender=s["sender"], recipients=s["recipients"])


def _rules_message(settings: dict[str, Any]) -> alert_pb2.AlertRules:
    rules = []
    for alert, rule in sorted(settings["rules"].items()):
        rules.append(alert_pb2.AlertRule(alert=alert, **{k: v for k, v in rule.items()
                                                          if k in SETTINGS}))
    return alert_pb2.AlertRules(rules=rules, reminder_seconds=settings["reminder_seconds"])


def _notification(doc: dict[str, Any]) -> alert_pb2.Notification:
    deliveries = [alert_pb2.Delivery(
        channel=d["channel"], state=d["state"], attempts=d["attempts"],
        tries=[alert_pb2.DeliveryAttempt(**t) for t in d["tries"]]) for d in doc["deliveries"]]
    body = {k: v for k, v in doc.items() if k != "deliveries"}
    return alert_pb2.Notification(
        id=doc["id"], type=doc["type"], title=doc["title"],
        trunk_name=doc.get("trunk_name", ""), trunk_id=doc.get("trunk_id", ""),
        created_at=doc["created_at"], deliveries=deliveries,
        body_json=json.dumps(body, sort_keys=True))
