"""Bringing a tenant to a desired configuration (a restored backup) with the ordinary
commands, so every difference is recorded as the usual events. Trunks and outbound routes
are matched by name, inbound routes by what they match (DID, caller ID, trunk), the PBX
access is the tenant's one. What the tenant has beyond the desired configuration is kept
and reported, never deleted."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from domain import commands
from domain.alerting import sync_alerting
from domain.catalog import (
    INBOUND,
    OUTBOUND,
    TRUNK,
    CommandReceipt,
    TenantCatalog,
    default_policy,
)
from domain.errors import PreconditionError, ValidationError, Violations
from domain.model import CommandMeta, Fields
from domain.operations import OperatorAction
from domain.pbx import Pbx, default_pbx, validate_pbx
from domain.routes import InboundRoute, OutboundRoute, validate_inbound, validate_outbound
from domain.text import name_key
from domain.trunk import Trunk
from domain.trunk_settings import validate_trunk
from domain.unit_of_work import UnitOfWork


@dataclass
class DesiredConfig:
    """Trunks by name (no password: keep the current one); routes name their trunks."""

    trunks: list[Fields] = field(default_factory=list)
    outbound_routes: list[Fields] = field(default_factory=list)  # in route order
    inbound_routes: list[Fields] = field(default_factory=list)
    pbx: Fields | None = None  # None: the document says nothing about the PBX
    policy: Fields | None = None  # the tenant's guard and hours; None: not in the document
    channels: list[Fields] | None = None  # notification channels (domain.alerting)
    alert_rules: Fields | None = None


IMPORT = "ImportConfiguration"


@dataclass
class SyncReport:
    changes: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    replayed: bool = False  # the request id was already applied: nothing changed now
    # The tenant had nothing before: this import starts its history anew (every change
    # recorded now, by the importer), it does not bring an earlier history back.
    new_history: bool = False


def sync_tenant(uow: UnitOfWork, tenant: str, desired: DesiredConfig,
                meta: CommandMeta) -> SyncReport:
    """The request id covers the whole import: a retry changes nothing. Its commands run
    without it (each carries it on its events), since they are parts of one request, not
    retries of each other."""
    if meta.idempotency_key and _already_applied(uow, tenant, meta):
        return SyncReport(replayed=True)
    each = replace(meta, idempotency_key="", fingerprint="")
    _check_distinct_names(desired)
    report = SyncReport(new_history=uow.peek(TenantCatalog.id_for(tenant),
                                             TenantCatalog) is None)
    _sync_trunks(uow, tenant, desired.trunks, each, report)
    _sync_outbound(uow, tenant, desired.outbound_routes, each, report)
    _sync_inbound(uow, tenant, desired.inbound_routes, each, report)
    _sync_pbx(uow, tenant, desired.pbx, each, report)
    _sync_policy(uow, tenant, desired.policy, each, report)
    sync_alerting(uow, tenant, desired.channels, desired.alert_rules, each, report.changes)
    if report.new_history and report.changes:
        uow.add(OperatorAction.record(tenant, "history_started",
                                      {"changes": len(report.changes)}, each))
    if meta.idempotency_key:
        uow.add(CommandReceipt.issue(tenant, meta.idempotency_key, IMPORT, meta.fingerprint,
                                     _catalog(uow, tenant, each).id))
    return report


def _already_applied(uow: UnitOfWork, tenant: str, meta: CommandMeta) -> bool:
    receipt = uow.peek(CommandReceipt.id_for(tenant, meta.idempotency_key), CommandReceipt)
    if receipt is None:
        return False
    if receipt.command != IMPORT or receipt.fingerprint != meta.fingerprint:
        raise PreconditionError(
            f"request_id '{meta.idempotency_key}' was already used for a different request")
    return True


def _check_distinct_names(desired: DesiredConfig) -> None:
    """Two entries with the same name (`dup1` and `DUP1`) would be matched to one trunk:
    created, then renamed. Refused instead, naming both."""
    errors = Violations()
    for label, items in (("trunks", desired.trunks),
                         ("outbound_routes", desired.outbound_routes)):
        seen: dict[str, int] = {}
        for index, raw in enumerate(items):
            name = str(raw.get("name", ""))
            first = seen.setdefault(name_key(name), index)
            if first != index:
                errors.add(f"{label}[{index}].name",
                           f"'{name}' is the same name as {label}[{first}] "
                           f"'{items[first].get('name')}' (names compare ignoring case, width "
                           "and look-alike letters)")
    errors.raise_if_any()


def _catalog(uow: UnitOfWork, tenant: str, meta: CommandMeta) -> TenantCatalog:
    return commands.catalog_of(uow, tenant, meta)


def _sync_trunks(uow: UnitOfWork, tenant: str, wanted: list[Fields], meta: CommandMeta,
                 report: SyncReport) -> None:
    for index, raw in enumerate(wanted):
        existing = _catalog(uow, tenant, meta).find(TRUNK, str(raw.get("name", "")))
        if existing is None:
            if raw.get("type") in ("register", "account") and not raw.get("password"):
                raise ValidationError.single(
                    f"tenants.{tenant}.trunks[{index}].password",
                    f"{raw['type']} trunk '{raw.get('name')}' is not here yet and needs a "
                    "password, which the document does not hold (exported without "
                    "--with-secrets): export it again with `trunkplane config export "
                    "--with-secrets` and import with its passphrase, or add the password")
            commands.create_trunk(uow, tenant, raw, "", meta)
            report.changes.append(f"create trunk {raw['name']}")
            continue
        trunk = uow.peek(UUID(existing), Trunk)
        assert trunk is not None
        settings, _ = validate_trunk({**trunk.settings, **raw})
        patch = _differences(trunk.settings, settings)
        if patch and raw.get("password"):  # given again: it may go to a new host
            patch["password"] = settings["password"]
        if patch:
            commands.update_trunk(uow, tenant, existing, patch, "", meta)
            report.changes.append(f"update trunk {raw['name']}: {', '.join(sorted(patch))}")
    report.kept += _not_named(_catalog(uow, tenant, meta), TRUNK, "trunk", wanted)


def _sync_outbound(uow: UnitOfWork, tenant: str, wanted: list[Fields], meta: CommandMeta,
                   report: SyncReport) -> None:
    for index, raw in enumerate(wanted):
        catalog = _catalog(uow, tenant, meta)
        existing = catalog.find(OUTBOUND, str(raw.get("name", "")))
        if existing is None:
            commands.create_outbound_route(uow, tenant, raw, index + 1, meta)
            report.changes.append(f"create outbound route {raw['name']}")
            continue
        route = uow.peek(UUID(existing), OutboundRoute)
        assert route is not None
        settings = commands.resolve_route_trunks(catalog, validate_outbound(raw))
        patch = _differences(route.settings, settings)
        moved = catalog.outbound_order.index(existing) != index
        if patch or moved:
            commands.update_outbound_route(uow, tenant, existing, patch,
                                           index + 1 if moved else None, "", meta)
            what = sorted(patch) + (["position"] if moved else [])
            report.changes.append(f"update outbound route {raw['name']}: {', '.join(what)}")
    report.kept += _not_named(_catalog(uow, tenant, meta), OUTBOUND, "outbound route", wanted)


def _sync_inbound(uow: UnitOfWork, tenant: str, wanted: list[Fields], meta: CommandMeta,
                  report: SyncReport) -> None:
    matched: set[str] = set()
    for raw in wanted:
        catalog = _catalog(uow, tenant, meta)
        settings = commands.resolve_inbound_trunk(catalog, validate_inbound(raw))
        label = f"inbound route {settings['did_pattern'] or 'any DID'}"
        existing = _find_inbound(catalog, settings)
        if existing is None:
            created = commands.create_inbound_route(uow, tenant, raw, meta)
            matched.add(str(created.aggregate.id))
            report.changes.append(f"create {label}")
            continue
        matched.add(existing)
        route = uow.peek(UUID(existing), InboundRoute)
        assert route is not None
        patch = _differences(route.settings, settings)
        if patch:
            commands.update_inbound_route(uow, tenant, existing, patch, "", meta)
            report.changes.append(f"update {label}: {', '.join(sorted(patch))}")
    report.kept += [f"inbound route {e['did_pattern'] or 'any DID'} ({rid})"
                    for rid, e in _catalog(uow, tenant, meta).entries[INBOUND].items()
                    if rid not in matched]


def _sync_pbx(uow: UnitOfWork, tenant: str, wanted: Fields | None, meta: CommandMeta,
              report: SyncReport) -> None:
    """Without a password in the document the current one stays, as for trunks."""
    pbx = uow.peek(Pbx.id_for(tenant), Pbx)
    if wanted is None:
        if pbx is not None:
            report.kept.append("pbx")
        return
    current = default_pbx() if pbx is None else pbx.settings
    patch = _differences(current, validate_pbx({**current, **wanted}))
    if patch:
        commands.update_pbx(uow, tenant, patch, "", meta)
        verb = "create pbx" if pbx is None else "update pbx"
        report.changes.append(f"{verb}: {', '.join(sorted(patch))}")


def _sync_policy(uow: UnitOfWork, tenant: str, wanted: Fields | None, meta: CommandMeta,
                 report: SyncReport) -> None:
    """The document's policy replaces the tenant's whole guard and business hours: a
    restore must bring back the fraud guard exactly as it was exported."""
    if wanted is None:
        return
    catalog = _catalog(uow, tenant, meta)
    before = dict(catalog.policy)
    policy = {**default_policy(), **wanted}
    guard = {**default_policy()["guard"], **(policy["guard"] or {})}
    after = commands.update_tenant_policy(
        uow, tenant, {"guard": guard, "business_hours": policy["business_hours"]}, meta)
    if after != before:
        changed = sorted(k for k in after if after[k] != before.get(k))
        report.changes.append(f"update policy: {', '.join(changed)}")


def _not_named(catalog: TenantCatalog, kind: str, label: str,
               wanted: list[Fields]) -> list[str]:
    names = {name_key(str(raw.get("name", ""))) for raw in wanted}
    return [f"{label} {e['name']}" for e in catalog.entries[kind].values()
            if name_key(e["name"]) not in names]


def _find_inbound(catalog: TenantCatalog, settings: Fields) -> str | None:
    keys = ("did_pattern", "caller_id_pattern", "trunk_id")
    for route_id, entry in catalog.entries[INBOUND].items():
        if all(entry[k] == settings[k] for k in keys):
            return route_id
    return None


def _differences(current: Fields, wanted: Fields) -> dict[str, Any]:
    return {k: v for k, v in wanted.items() if current.get(k) != v}
