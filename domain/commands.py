"""Command handlers: read the aggregates, call them, leave the changes in the unit of work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from domain.catalog import (
    INBOUND,
    OUTBOUND,
    TRUNK,
    CommandReceipt,
    TenantCatalog,
    default_policy,
)
from domain.errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    PreconditionError,
    ValidationError,
    Violations,
)
from domain.guard import ALERT_KINDS, validate_guard, validate_hours
from domain.model import CommandMeta, Configured, Fields, etag_for
from domain.pbx import Pbx, default_pbx, validate_pbx
from domain.routes import InboundRoute, OutboundRoute, validate_inbound, validate_outbound
from domain.templates import get_template
from domain.trunk import Trunk
from domain.trunk_settings import validate_trunk, with_default_codecs
from domain.unit_of_work import UnitOfWork
from domain.values import parse_tenant

C = TypeVar("C", bound=Configured)


@dataclass
class Outcome:
    aggregate: Configured
    warnings: list[str] = field(default_factory=list)


def catalog_of(uow: UnitOfWork, tenant: str, meta: CommandMeta,
               write: bool = False) -> TenantCatalog:
    """The tenant's catalog: shared for reading, or a copy to change when `write`. Every
    command passes here, so this is where the tenant and the request's free text are
    checked (a tenant `default\\n` would be a second tenant that looks like `default`)."""
    try:
        parse_tenant(tenant)
    except ValueError as error:
        raise ValidationError.single("tenant", str(error)) from None
    meta.check()
    catalog_id = TenantCatalog.id_for(tenant)
    catalog = uow.find(catalog_id, TenantCatalog) if write else uow.peek(
        catalog_id, TenantCatalog)
    if catalog is None:
        catalog = TenantCatalog.start(tenant, meta)
        uow.add(catalog)
    return catalog


def load(uow: UnitOfWork, catalog: TenantCatalog, kind: str, cls: type[C], ref: str) -> C:
    key = "name" if kind != INBOUND else "id"
    entry_id = catalog.find(kind, ref, key)
    label = cls.KIND
    if entry_id is None:
        raise NotFoundError(f"no {label} '{ref}' in tenant '{catalog.tenant}'")
    found = uow.find(UUID(entry_id), cls)
    if found is None or found.deleted:
        raise NotFoundError(f"no {label} '{ref}' in tenant '{catalog.tenant}'")
    return found


def idempotent(
    uow: UnitOfWork, tenant: str, meta: CommandMeta, command: str,
    handler: Callable[[], Outcome],
) -> Outcome:
    """Runs the handler once per request id; a retry returns the resource as it is now."""
    if not meta.idempotency_key:
        return handler()
    receipt = uow.peek(CommandReceipt.id_for(tenant, meta.idempotency_key), CommandReceipt)
    if receipt is not None:
        if receipt.fingerprint != meta.fingerprint or receipt.command != command:
            raise PreconditionError(
                f"request_id '{meta.idempotency_key}' was already used for a different request"
            )
        previous = uow.peek(UUID(receipt.resource_id), Configured)
        assert previous is not None
        return Outcome(previous)
    outcome = handler()
    uow.add(CommandReceipt.issue(tenant, meta.idempotency_key, command, meta.fingerprint,
                                 outcome.aggregate.id))
    return outcome


def _check_unique_name(catalog: TenantCatalog, kind: str, name: str, own_id: UUID | None,
                       label: str) -> None:
    other = catalog.find(kind, name)
    if other is not None and other != str(own_id):
        raise AlreadyExistsError(f"{label} '{name}' already exists in tenant '{catalog.tenant}'")


# Trunks


def create_trunk(uow: UnitOfWork, tenant: str, raw: Fields, template: str,
                 meta: CommandMeta) -> Outcome:
    def handler() -> Outcome:
        settings, warnings = validate_trunk(
            with_default_codecs(get_template(template).apply(raw) if template else raw))
        catalog = catalog_of(uow, tenant, meta, write=True)
        _check_unique_name(catalog, TRUNK, settings["name"], None, "trunk")
        trunk = Trunk.create(tenant, settings, meta)
        catalog.record(TRUNK, trunk.id, _trunk_entry(trunk), meta)
        uow.add(trunk)
        return Outcome(trunk, warnings)

    return idempotent(uow, tenant, meta, "CreateTrunk", handler)


def update_trunk(uow: UnitOfWork, tenant: str, ref: str, patch: Fields, etag: str,
                 meta: CommandMeta) -> Outcome:
    def handler() -> Outcome:
        catalog = catalog_of(uow, tenant, meta)
        trunk = load(uow, catalog, TRUNK, Trunk, ref)
        trunk.check_etag(etag)
        settings, warnings = validate_trunk(merge(trunk.settings, patch))
        trunk.check_credentials_stay(settings, patch, meta)
        _check_unique_name(catalog, TRUNK, settings["name"], trunk.id, "trunk")
        trunk.change_settings(settings, meta)
        if catalog.entries[TRUNK].get(str(trunk.id)) != _trunk_entry(trunk):
            uow.writable(catalog).record(TRUNK, trunk.id, _trunk_entry(trunk), meta)
        return Outcome(trunk, warnings)

    return idempotent(uow, tenant, meta, "UpdateTrunk", handler)


def delete_trunk(uow: UnitOfWork, tenant: str, ref: str, etag: str,
                 meta: CommandMeta) -> Outcome:
    def handler() -> Outcome:
        catalog = catalog_of(uow, tenant, meta, write=True)
        trunk = load(uow, catalog, TRUNK, Trunk, ref)
        trunk.check_etag(etag)
        users = catalog.routes_using(str(trunk.id))
        if users:
            raise PreconditionError(
                f"trunk '{trunk.name}' is used by routes: {', '.join(users)}; remove it from "
                "them first", users,
            )
        trunk.delete(meta)
        catalog.remove(TRUNK, trunk.id, meta)
        return Outcome(trunk)

    return idempotent(uow, tenant, meta, "DeleteTrunk", handler)


def _trunk_entry(trunk: Trunk) -> dict[str, Any]:
    s = trunk.settings
    return {"name": s["name"], "type": s["type"], "enabled": s["enabled"]}


def merge(current: Fields, patch: Fields) -> Fields:
    """Applies masked fields; nested settings (nat, call_limits) merge one level deep."""
    merged = dict(current)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            merged[key] = {**current[key], **value}
        else:
            merged[key] = value
    return merged


# Outbound routes


def resolve_route_trunks(catalog: TenantCatalog, settings: Fields) -> Fields:
    errors = Violations()
    for i, item in enumerate(settings["trunks"]):
        trunk_id = catalog.find(TRUNK, item["trunk_id"])
        if trunk_id is None:
            errors.add(f"trunks[{i}].trunk_id", f"no trunk '{item['trunk_id']}' in this tenant")
        else:
            item["trunk_id"] = trunk_id
    ids = [t["trunk_id"] for t in settings["trunks"]]
    for i, trunk_id in enumerate(ids):
        if trunk_id in ids[:i]:
            errors.add(f"trunks[{i}].trunk_id", "the same trunk is listed twice")
    errors.raise_if_any()
    return settings


def _route_entry(route: OutboundRoute) -> dict[str, Any]:
    return {"name": route.settings["name"], "trunk_ids": route.trunk_ids,
            "enabled": route.settings["enabled"]}


def _check_position(position: int | None) -> None:
    if position is not None and position < 0:
        raise ValidationError.single("position", f"must be 1 or more (0 = last), got {position}")


def create_outbound_route(uow: UnitOfWork, tenant: str, raw: Fields, position: int | None,
                          meta: CommandMeta) -> Outcome:
    def handler() -> Outcome:
        _check_position(position)
        catalog = catalog_of(uow, tenant, meta, write=True)
        settings = resolve_route_trunks(catalog, validate_outbound(raw))
        _check_unique_name(catalog, OUTBOUND, settings["name"], None, "outbound route")
        route = OutboundRoute.create(tenant, settings, meta)
        catalog.record(OUTBOUND, route.id, _route_entry(route), meta)
        catalog.place_outbound(route.id, position, meta)
        uow.add(route)
        return Outcome(route)

    return idempotent(uow, tenant, meta, "CreateOutboundRoute", handler)


def update_outbound_route(uow: UnitOfWork, tenant: str, ref: str, patch: Fields,
                          position: int | None, etag: str, meta: CommandMeta) -> Outcome:
    def handler() -> Outcome:
        _check_position(position)
        catalog = catalog_of(uow, tenant, meta, write=True)
        route = load(uow, catalog, OUTBOUND, OutboundRoute, ref)
        route.check_etag(etag)
        settings = resolve_route_trunks(catalog, validate_outbound(merge(route.settings, patch)))
        _check_unique_name(catalog, OUTBOUND, settings["name"], route.id, "outbound route")
        route.change_settings(settings, meta)
        catalog.record(OUTBOUND, route.id, _route_entry(route), meta)
        catalog.place_outbound(route.id, position, meta)
        return Outcome(route)

    return idempotent(uow, tenant, meta, "UpdateOutboundRoute", handler)


def delete_route(uow: UnitOfWork, tenant: str, kind: str, ref: str, etag: str,
                 meta: CommandMeta) -> Outcome:
    def handler() -> Outcome:
        catalog = catalog_of(uow, tenant, meta, write=True)
        cls: type[Configured] = OutboundRoute if kind == OUTBOUND else InboundRoute
        route = load(uow, catalog, kind, cls, ref)
        route.check_etag(etag)
        route.delete(meta)
        catalog.remove(kind, route.id, meta)
        return Outcome(route)

    return idempotent(uow, tenant, meta, f"Delete{kind.title()}Route", handler)


# Inbound routes


def _inbound_entry(catalog: TenantCatalog, route: InboundRoute) -> dict[str, Any]:
    s = route.settings
    return {"id": str(route.id), "did_pattern": s["did_pattern"],
            "caller_id_pattern": s["caller_id_pattern"], "trunk_id": s["trunk_id"]}


def resolve_inbound_trunk(catalog: TenantCatalog, settings: Fields) -> Fields:
    """The route's trunk filter as a trunk id (it may be given by name)."""
    if settings["trunk_id"]:
        trunk_id = catalog.find(TRUNK, settings["trunk_id"])
        if trunk_id is None:
            raise ValidationError.single(
                "trunk_id", f"no trunk '{settings['trunk_id']}' in this tenant")
        settings["trunk_id"] = trunk_id
    return settings


def _checked_inbound(catalog: TenantCatalog, raw: Fields, own_id: UUID | None) -> Fields:
    settings = resolve_inbound_trunk(catalog, validate_inbound(raw))
    for entry_id, entry in catalog.entries[INBOUND].items():
        same = all(entry[k] == settings[k] for k in ("did_pattern", "caller_id_pattern",
                                                      "trunk_id"))
        if same and entry_id != str(own_id):
            raise AlreadyExistsError(
                f"inbound route {entry_id} already matches DID '{settings['did_pattern']}' "
                f"with caller ID '{settings['caller_id_pattern']}'"
            )
    return settings


def create_inbound_route(uow: UnitOfWork, tenant: str, raw: Fields,
                         meta: CommandMeta) -> Outcome:
    def handler() -> Outcome:
        catalog = catalog_of(uow, tenant, meta, write=True)
        route = InboundRoute.create(tenant, _checked_inbound(catalog, raw, None), meta)
        catalog.record(INBOUND, route.id, _inbound_entry(catalog, route), meta)
        uow.add(route)
        return Outcome(route)

    return idempotent(uow, tenant, meta, "CreateInboundRoute", handler)


def update_inbound_route(uow: UnitOfWork, tenant: str, ref: str, patch: Fields, etag: str,
                         meta: CommandMeta) -> Outcome:
    def handler() -> Outcome:
        catalog = catalog_of(uow, tenant, meta, write=True)
        route = load(uow, catalog, INBOUND, InboundRoute, ref)
        route.check_etag(etag)
        route.change_settings(_checked_inbound(catalog, merge(route.settings, patch), route.id),
                              meta)
        catalog.record(INBOUND, route.id, _inbound_entry(catalog, route), meta)
        return Outcome(route)

    return idempotent(uow, tenant, meta, "UpdateInboundRoute", handler)


# The tenant's policy


def update_tenant_policy(uow: UnitOfWork, tenant: str, patch: Fields,
                         meta: CommandMeta) -> dict[str, Any]:
    """Changes the fields of the tenant's guard that `patch["guard"]` names; setting the
    same policy again records nothing (a retry is harmless)."""
    catalog = catalog_of(uow, tenant, meta, write=True)
    errors = Violations()
    current = {**default_policy(), **catalog.policy}
    guard = validate_guard({**current["guard"], **(patch.get("guard") or {})}, errors,
                           "policy.guard")
    hours = current["business_hours"]
    if "business_hours" in patch:
        hours = patch["business_hours"] and {**(hours or {}), **patch["business_hours"]}
    hours = validate_hours(hours, errors, "policy.business_hours")
    errors.raise_if_any()
    catalog.set_policy({"guard": guard, "business_hours": hours}, meta)
    return dict(catalog.policy)


def record_fraud_alert(uow: UnitOfWork, tenant: str, kind: str, detail: str, extension: str,
                       route_id: str, meta: CommandMeta) -> dict[str, str]:
    """An agent's alert, recorded in the history (it changes no configuration)."""
    errors = Violations()
    if kind not in ALERT_KINDS:
        errors.add("kind", f"must be one of {', '.join(ALERT_KINDS)}")
    if not detail.strip() or len(detail) > 500 or not detail.isprintable():
        errors.add("detail", "must be printable text of 1 to 500 characters")
    if len(extension) > 64 or not extension.isprintable():
        errors.add("extension", "must be printable, at most 64 characters")
    if len(route_id) > 64 or not route_id.isprintable():
        errors.add("route_id", "must be printable, at most 64 characters")
    errors.raise_if_any()
    catalog = catalog_of(uow, tenant, meta, write=True)
    catalog.raise_alert(kind, detail.strip(), extension, route_id, meta)
    return {"tenant": tenant, "kind": kind, "detail": detail.strip()}


# The tenant's PBX


def update_pbx(uow: UnitOfWork, tenant: str, patch: Fields, etag: str,
               meta: CommandMeta) -> Outcome:
    """Changes the fields of the tenant's PBX access that `patch` names (the first change
    creates it); what does not change records nothing."""
    def handler() -> Outcome:
        pbx = uow.find(Pbx.id_for(tenant), Pbx)
        if pbx is None:
            if etag and etag != etag_for(0):
                raise ConflictError(f"the PBX of tenant '{tenant}' is not configured yet "
                                    f"(etag {etag_for(0)}, got {etag})")
            created = Pbx.start(tenant, validate_pbx(merge(default_pbx(), patch)), meta)
            uow.add(created)
            return Outcome(created)
        pbx.check_etag(etag)
        pbx.change_settings(validate_pbx(merge(pbx.settings, patch)), meta)
        return Outcome(pbx)

    return idempotent(uow, tenant, meta, "UpdatePbx", handler)
