"""The configuration backup document: every trunk and route of one or more tenants, and
their PBX access and policy, as one versioned JSON document, the same bytes for the same
configuration. Passwords are left out, or sealed for a passphrase (scrypt, then AES-GCM
bound to the tenant and trunk name, or to the tenant's PBX)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

from domain.alerting import AlertRules
from domain.application import TrunkplaneApp
from domain.catalog import INBOUND, TRUNK, default_policy
from domain.errors import ValidationError
from domain.pbx import Pbx
from domain.sync import DesiredConfig
from infra.security.sealing import PassphraseSealer

FORMAT = "trunkplane.config"
VERSION = 1
Document = dict[str, Any]


def export_document(app: TrunkplaneApp, tenants: list[str], sealer: PassphraseSealer | None,
                    channels: Callable[[str], list[str]] = lambda tenant: []) -> Document:
    """channels: the ids of a tenant's notification channels (the views know them)."""
    document: Document = {"format": FORMAT, "version": VERSION, "tenants": {}}
    if sealer is not None:
        document["secrets"] = sealer.header()
    for tenant in sorted(tenants):
        catalog = app.catalog(tenant)
        pbx = _pbx(app, tenant, sealer)
        if catalog is None:
            if pbx is not None:
                document["tenants"][tenant] = {"pbx": pbx}
            continue
        names = {rid: e["name"] for rid, e in catalog.entries[TRUNK].items()}
        document["tenants"][tenant] = {
            "trunks": [_trunk(app, tenant, UUID(rid), sealer)
                       for rid in sorted(names, key=lambda r: names[r].casefold())],
            "outbound_routes": [_outbound(app, UUID(rid), names)
                                for rid in catalog.outbound_order],
            "inbound_routes": sorted(
                (_inbound(app, UUID(rid), names) for rid in catalog.entries[INBOUND]),
                key=lambda r: (r["did_pattern"], r["caller_id_pattern"], r["trunk"])),
            # the tenant's fraud guard and business hours: a restore without them would
            # silently drop the guard
            "policy": {**default_policy(), **catalog.policy},
        }
        if pbx is not None:
            document["tenants"][tenant]["pbx"] = pbx
        document["tenants"][tenant].update(_alerting(app, tenant, channels(tenant), sealer))
    return document


def _channel_context(tenant: str, name: str) -> str:
    """Not of the form `tenant/name` either: a channel's secret never opens as a trunk's."""
    return f"channel:{tenant}/{name}"


def _alerting(app: TrunkplaneApp, tenant: str, channel_ids: list[str],
              sealer: PassphraseSealer | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rules = app.aggregate(AlertRules.id_for(tenant))
    if isinstance(rules, AlertRules):
        out["alert_rules"] = {k: v for k, v in rules.settings.items() if k != "enabled"}
    found = []
    for channel_id in channel_ids:
        settings = _settings(app, UUID(channel_id))
        for secret in ("secret", "password"):
            value = settings.pop(secret)
            if sealer is not None and value:
                settings[f"{secret}_sealed"] = sealer.seal(
                    value, _channel_context(tenant, settings["name"]) + f"#{secret}")
        found.append(settings)
    if found:
        out["channels"] = sorted(found, key=lambda c: str(c["name"]).casefold())
    return out


def _pbx_context(tenant: str) -> str:
    """Not of the form `tenant/name`: a trunk's sealed password never opens as the PBX's."""
    return f"pbx:{tenant}"


def _pbx(app: TrunkplaneApp, tenant: str,
         sealer: PassphraseSealer | None) -> dict[str, Any] | None:
    aggregate = app.aggregate(Pbx.id_for(tenant))
    if not isinstance(aggregate, Pbx):
        return None
    settings = dict(aggregate.settings)
    password = settings.pop("password")
    if sealer is not None and password:
        settings["password_sealed"] = sealer.seal(password, _pbx_context(tenant))
    return settings


def _settings(app: TrunkplaneApp, aggregate_id: UUID) -> dict[str, Any]:
    aggregate: Any = app.aggregate(aggregate_id)
    return dict(aggregate.settings)


def _trunk(app: TrunkplaneApp, tenant: str, trunk_id: UUID,
           sealer: PassphraseSealer | None) -> dict[str, Any]:
    settings = _settings(app, trunk_id)
    password = settings.pop("password")
    if sealer is not None and password:
        settings["password_sealed"] = sealer.seal(password, f"{tenant}/{settings['name']}")
    key = settings.pop("client_key", "")
    if sealer is not None and key:
        settings["client_key_sealed"] = sealer.seal(key, _key_context(tenant, settings["name"]))
    return settings


def _key_context(tenant: str, name: str) -> str:
    """A trunk's client key: never opens as its password (`tenant/name`)."""
    return f"{tenant}/{name}#client_key"


def _outbound(app: TrunkplaneApp, route_id: UUID, names: dict[str, str]) -> dict[str, Any]:
    settings = _settings(app, route_id)
    settings["trunks"] = [{"trunk": names.get(t["trunk_id"], t["trunk_id"]),
                           "weight": t["weight"]} for t in settings["trunks"]]
    return settings


def _inbound(app: TrunkplaneApp, route_id: UUID, names: dict[str, str]) -> dict[str, Any]:
    settings = _settings(app, route_id)
    settings["trunk"] = names.get(settings.pop("trunk_id"), "")
    return settings


def read_document(text: str, passphrase: str) -> dict[str, DesiredConfig]:
    """The desired configuration per tenant; sealed passwords opened with the passphrase.
    A document of the wrong shape is a ValidationError naming where, never a crash."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ValidationError.single("document", f"is not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValidationError.single("document", f"is not a {FORMAT} document")
    if document.get("version") != VERSION:
        raise ValidationError.single(
            "document", f"version {document.get('version')!r} is not one this release reads "
                        f"({VERSION})")
    try:
        sealer = _opener(document, passphrase)
        return {str(tenant): _desired(str(tenant), body, sealer)
                for tenant, body in _object(document.get("tenants", {}), "tenants").items()}
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValidationError.single("document", f"malformed ({type(error).__name__}: "
                                                 f"{str(error)[:200]})") from None


def _desired(tenant: str, body: Any, sealer: PassphraseSealer | None) -> DesiredConfig:
    where = f"tenants.{tenant}"
    body = _object(body, where)
    return DesiredConfig(
        trunks=[_desired_trunk(tenant, t, sealer) for t in _objects(body, "trunks", where)],
        outbound_routes=[{**r, "trunks": [
            {"trunk_id": t["trunk"], "weight": t.get("weight", 1)}
            for t in _objects(r, "trunks", f"{where}.outbound_routes")]}
            for r in _objects(body, "outbound_routes", where)],
        inbound_routes=[{**{k: v for k, v in r.items() if k != "trunk"},
                         "trunk_id": r.get("trunk", "")}
                        for r in _objects(body, "inbound_routes", where)],
        pbx=_desired_pbx(tenant, body["pbx"], sealer) if "pbx" in body else None,
        policy=body.get("policy"),
        channels=[_desired_channel(tenant, c, sealer) for c in _objects(body, "channels", where)]
        if "channels" in body else None,
        alert_rules=_object(body["alert_rules"], f"{where}.alert_rules")
        if "alert_rules" in body else None)


def _desired_channel(tenant: str, channel: dict[str, Any],
                     sealer: PassphraseSealer | None) -> dict[str, Any]:
    wanted = {k: v for k, v in channel.items() if not k.endswith("_sealed")}
    for secret in ("secret", "password"):
        if f"{secret}_sealed" in channel and sealer is not None:
            wanted[secret] = sealer.open(str(channel[f"{secret}_sealed"]), _channel_context(
                tenant, str(channel.get("name", ""))) + f"#{secret}")
    return wanted


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError.single(where, f"must be an object, not {type(value).__name__}")
    return value


def _objects(parent: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    items = parent.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValidationError.single(f"{where}.{key}", "must be a list of objects")
    return items


def _desired_pbx(tenant: str, pbx: Any, sealer: PassphraseSealer | None) -> dict[str, Any]:
    if not isinstance(pbx, dict):
        raise ValidationError.single(f"tenants.{tenant}.pbx", "must be an object")
    wanted = {k: v for k, v in pbx.items() if k != "password_sealed"}
    if "password_sealed" in pbx and sealer is not None:
        wanted["password"] = sealer.open(pbx["password_sealed"], _pbx_context(tenant))
    return wanted


def _opener(document: Document, passphrase: str) -> PassphraseSealer | None:
    header = document.get("secrets")
    if header is None:
        return None
    if not passphrase:
        raise ValidationError.single("passphrase", "the document holds sealed passwords: "
                                                   "give the passphrase they were sealed with")
    return PassphraseSealer(passphrase, base64.b64decode(header["salt"]))


def _desired_trunk(tenant: str, trunk: dict[str, Any],
                   sealer: PassphraseSealer | None) -> dict[str, Any]:
    wanted = {k: v for k, v in trunk.items() if not k.endswith("_sealed")}
    if "password_sealed" in trunk and sealer is not None:
        wanted["password"] = sealer.open(str(trunk["password_sealed"]),
                                         f"{tenant}/{trunk.get('name')}")
    if "client_key_sealed" in trunk and sealer is not None:
        wanted["client_key"] = sealer.open(str(trunk["client_key_sealed"]),
                                           _key_context(tenant, str(trunk.get("name"))))
    return wanted


def dumps(document: Document) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
