"""The notifier, a part of the control plane's process: it follows the agents' status log
and the event log (fraud alerts) from stored positions, keeps every watched condition,
decides what to tell whom under each tenant's alert rules, and delivers through the
tenant's channels with capped, jittered retries. Decisions and positions are written
together (infra.notify.outbox), so a restart neither loses nor repeats one."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from domain.alerting import AlertRules, NotificationChannel, default_rules
from domain.application import TrunkplaneApp
from domain.catalog import TenantCatalog
from infra.config.settings import Settings
from infra.ledger.verify import Report
from infra.notify import watch
from infra.notify.conditions import Doc, Rule, evaluate
from infra.notify.deliver import DeliveryError, send
from infra.notify.outbox import Decision, Delivery, Notification, Outbox
from projections.config_view import ConfigView
from projections.runner import describe
from projections.status import LOG, StatusView
from projections.views import ViewStore

log = logging.getLogger("trunkplane.notify")
STATUS, EVENTS = "status", "events"
BATCH = 500
# A report on a trunk the config view does not hold yet waits this long for the view (it
# projects after the store): dropping it would lose the trunk's first failure for good.
VIEW_LAG = timedelta(seconds=15)


class Notifier:
    def __init__(self, app: TrunkplaneApp, store: ViewStore, status: StatusView,
                 settings: Settings, leader: Callable[[], bool] = lambda: True) -> None:
        self.app, self.status, self.settings = app, status, settings
        self.config = ConfigView(store, app.head, lambda position, timeout: True)
        self.store = store
        self.outbox = Outbox(store.db)
        self.leader = leader  # one deciding notifier among control planes sharing a store
        self.relay_lag: Callable[[], int] | None = None  # the distributed mode sets it
        self.audit_check: Callable[[], Report] | None = None  # `audit verify`'s check
        self.conditions = self.outbox.conditions()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_audit = datetime.min.replace(tzinfo=UTC)
        self._rules_seen: dict[str, dict[str, Any]] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.notify.timeout + 5)
        release = getattr(self.leader, "release", None)
        if release is not None:
            release()

    def notify(self) -> None:
        """Something new was stored: look now rather than at the next tick."""
        self._wake.set()

    def _run(self) -> None:
        leading = False
        while not self._stop.is_set():
            try:
                if not self.leader():
                    leading = False
                else:
                    if not leading:  # another control plane may have decided meanwhile
                        self.conditions = self.outbox.conditions()
                        leading = True
                    self.step(datetime.now(UTC))
            except Exception:
                log.exception("notifier: a step failed; trying again at the next tick")
                leading = False  # read the stored conditions again: memory may be ahead
            self._wake.wait(self.settings.notify.tick)
            self._wake.clear()

    def step(self, now: datetime) -> None:
        self._decide(now)
        self.deliver(now)

    # --- deciding -------------------------------------------------------------------

    def _decide(self, now: datetime) -> None:
        self._rules_seen.clear()  # each step reads each tenant's rules once
        with self.outbox.decide() as decision:
            changed: dict[str, Doc] = {}
            self._read_status(decision, changed, now)
            self._read_events(decision, now)
            self._control_plane(changed, now)
            for k, state in {**self.conditions, **changed}.items():
                self._judge(k, state, decision, changed, now)
            decision.conditions.update(changed)
        self.conditions.update(changed)

    def _read_status(self, decision: Decision, changed: dict[str, Doc], now: datetime) -> None:
        position = self.outbox.position(STATUS)
        with self.store.db.transaction() as cur:
            cur.execute(f"SELECT position, doc FROM {LOG} WHERE position > ? "
                        f"ORDER BY position LIMIT {BATCH}", (position,))
            rows = [(int(p), json.loads(d)) for p, d in cur.fetchall()]
        for position, report in rows:
            trunk = self.config.trunk_doc(report["tenant"], report["trunk_id"])
            if trunk is None and now - datetime.fromisoformat(report["observed_at"]) < VIEW_LAG:
                break  # a trunk the config view has not projected yet: read it next tick
            for k, state in watch.trunk_report({**self.conditions, **changed}, report, trunk,
                                               now):
                changed[k] = state
            decision.positions[STATUS] = position

    def _read_events(self, decision: Decision, now: datetime) -> None:
        position = self.outbox.position(EVENTS)
        found = self.app.recorder.select_notifications(position, BATCH,
                                                       inclusive_of_start=False)
        for stored in found:
            if stored.topic.endswith("FraudAlertRaised"):
                event = self.app.mapper.to_domain_event(stored)
                if isinstance(event, TenantCatalog.FraudAlertRaised):
                    self._fraud(event, decision, now)
        if found:
            decision.positions[EVENTS] = found[-1].id

    def _fraud(self, event: TenantCatalog.FraudAlertRaised, decision: Decision,
               now: datetime) -> None:
        if not self._rule(event.tenant, "fraud")["enabled"]:
            return
        title = f"Fraud alert ({event.kind}): {event.detail}"
        detail = {"tenant": event.tenant, "event": title, "detail": event.detail,
                  "extension": event.extension, "route_id": event.route_id,
                  "since": event.timestamp.isoformat()}
        self._emit(decision, event.tenant, "fraud_alert", event.kind, title, detail, now)

    def _control_plane(self, changed: dict[str, Doc], now: datetime) -> None:
        tenant = self.settings.tenant
        lag_rule = self._rule(tenant, "lag")
        rows = [(row["name"], int(row["lag_events"])) for row in describe(self.app, self.store)]
        if self.relay_lag is not None:
            rows.append(("relay", self.relay_lag()))
        merged = {**self.conditions, **changed}
        changed.update(watch.lag(merged, tenant, rows, int(lag_rule["events"]), now))
        silent = float(self._rule(tenant, "agent_silent")["seconds"])
        changed.update(watch.agents(merged, tenant, self.status.agents(), silent, now))

    def audit(self, decision: Decision, now: datetime) -> None:
        """`audit verify` on the log at the configured interval; each edit found notifies
        once (keyed by where it is)."""
        tenant = self.settings.tenant
        if self.audit_check is None or not self._rule(tenant, "audit_tampered")["enabled"]:
            return
        report = self.audit_check()
        for finding in report.findings[:20]:
            k = watch.key("audit", tenant, str(finding.position), finding.kind)
            if k in self.conditions:
                continue
            decision.conditions[k] = self.conditions[k] = {"fired": True,
                                                            "since": now.isoformat()}
            title = f"The event log was edited at position {finding.position}"
            self._emit(decision, tenant, "audit_tampered", str(finding.position), title,
                       {"tenant": tenant, "event": title,
                        "detail": f"{finding.kind}: {finding.detail}",
                        "fix": "`trunkplane audit verify` names every place; restore the log "
                               "from a backup"}, now)

    def _judge(self, k: str, state: Doc, decision: Decision, changed: dict[str, Doc],
               now: datetime) -> None:
        kind, tenant = k.split("\x1f")[:2]
        if kind not in watch.KINDS:
            return
        rule_name, raised, cleared = watch.KINDS[kind]
        rule = self._rule(tenant, rule_name)
        if kind == "capacity":
            state = watch.capacity(state, float(rule["share"]), now)
        if not rule["enabled"]:
            changed[k] = state
            return
        reminder = float(self._rules(tenant)["reminder_seconds"])
        state, what = evaluate(state, Rule(float(rule["seconds"]),
                                           int(rule.get("attempts", 0)), reminder), now)
        if state != self.conditions.get(k):
            changed[k] = state
        if what is None:
            return
        event = cleared if what == "cleared" else raised
        title, summary = watch.describe(kind, event, state["detail"])
        if what == "reminder":
            title = f"Reminder ({state['reminders']}): {title}"
        detail = {**state["detail"], "since": state["since"], "event": summary}
        if what == "cleared":
            detail.pop("fix", None)
        self._emit(decision, tenant, event, k.split("\x1f", 2)[-1], title, detail, now)

    def _emit(self, decision: Decision, tenant: str, event: str, subject: str, title: str,
              detail: Doc, now: datetime) -> None:
        channels = [(doc["id"], doc["settings"]["name"])
                    for doc in self.config.channel_docs(tenant)
                    if doc["settings"].get("enabled", True)]
        note = Notification(tenant, event, subject, title, {})
        provider = f"{detail['code']} {detail['reason']}" if detail.get("code") else (
            detail.get("reason", ""))
        note.doc = {**detail, "id": note.id, "type": event, "tenant": tenant, "title": title,
                    "summary": title + ".", "created_at": now.isoformat(),
                    "provider": provider}
        decision.notifications.append((note, channels))
        log.info("notification %s (%s) for tenant %s to %d channel(s)", note.id, event,
                 tenant, len(channels))

    def _rules(self, tenant: str) -> dict[str, Any]:
        if tenant not in self._rules_seen:
            found = self.app.aggregate(AlertRules.id_for(tenant))
            self._rules_seen[tenant] = found.settings if isinstance(found, AlertRules) else (
                default_rules())
        return self._rules_seen[tenant]

    def _rule(self, tenant: str, name: str) -> dict[str, Any]:
        return dict(self._rules(tenant)["rules"][name])

    # --- delivering -----------------------------------------------------------------

    def deliver(self, now: datetime) -> None:
        if now - self._last_audit >= timedelta(seconds=self.settings.notify.audit_interval):
            self._last_audit = now
            with self.outbox.decide() as decision:
                self.audit(decision, now)
        for delivery in self.outbox.due(now):
            if self._stop.is_set():
                return
            self._attempt(delivery)

    def _attempt(self, delivery: Delivery) -> None:
        channel = self.app.aggregate(UUID(delivery.channel_id))
        settings = self.settings.notify
        if not isinstance(channel, NotificationChannel) or channel.deleted:
            self.outbox.attempted(delivery, "failed", "the channel was deleted", "failed",
                                  datetime.now(UTC))
            return
        try:
            answer = send(channel.settings, delivery.doc, settings)
        except DeliveryError as error:
            self._failed(delivery, str(error))
            return
        self.outbox.attempted(delivery, "delivered", answer, "delivered", datetime.now(UTC))

    def _failed(self, delivery: Delivery, why: str) -> None:
        settings = self.settings.notify
        tries = delivery.attempts + 1
        if tries >= settings.max_attempts:
            log.warning("notification %s: gave up on channel %s after %d attempts: %s",
                        delivery.notification_id, delivery.channel_id, tries, why)
            self.outbox.attempted(delivery, "error", why, "failed", datetime.now(UTC))
            return
        window = min(settings.retry_cap, settings.retry_base * 2 ** (tries - 1))
        wait = random.uniform(window / 2, window)  # jitter, not a secret
        self.outbox.attempted(delivery, "error", why, "pending",
                              datetime.now(UTC) + timedelta(seconds=wait))

    def listed(self, tenant: str, limit: int) -> list[Doc]:
        return self.outbox.listed(tenant, limit)



class NotifierMetrics(Collector):
    """Deliveries by channel and outcome (delivered and failed only grow: counters) and
    what is still waiting to go out."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def collect(self) -> Iterator[Any]:
        counts = self.outbox.delivery_counts()
        done = CounterMetricFamily("trunkplane_notification_deliveries",
                                   "Notification deliveries by channel and outcome "
                                   "(failed: given up after the retry limit)",
                                   labels=["channel", "outcome"])
        pending = GaugeMetricFamily("trunkplane_notifications_pending",
                                    "Deliveries waiting for their first or next attempt")
        waiting = 0
        for (channel, state), count in sorted(counts.items()):
            if state == "pending":
                waiting += count
            else:
                done.add_metric([channel, state], count)
        pending.add_metric([], waiting)
        yield done
        yield pending
