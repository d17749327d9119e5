"""Reads of the current configuration: a trunk or route, pages of them, and outbound
resolution. Until the stored views land these read the aggregates themselves, which are
always current (read-your-writes holds trivially)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from domain.application import TrunkplaneApp
from domain.catalog import INBOUND, OUTBOUND, TRUNK, TenantCatalog
from domain.errors import NotFoundError, ValidationError
from domain.model import CommandMeta, Configured
from domain.routes import InboundRoute, OutboundRoute
from domain.routing import Resolution, resolve_outbound
from domain.trunk import Trunk

MAX_PAGE = 500
DEFAULT_PAGE = 50
C = TypeVar("C", bound=Configured)
LABELS = {TRUNK: "trunk", OUTBOUND: "outbound route", INBOUND: "inbound route"}


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_page_token: str
    total_size: int


class ConfigView:
    def __init__(self, app: TrunkplaneApp) -> None:
        self.app = app

    def _catalog(self, tenant: str) -> TenantCatalog:
        self.app.refresh()
        return self.app.catalog(tenant) or TenantCatalog.start(tenant, CommandMeta())

    def get(self, tenant: str, kind: str, cls: type[C], ref: str) -> C:
        entry_id = self._catalog(tenant).find(kind, ref, "id" if kind == INBOUND else "name")
        found = self.app.aggregate(UUID(entry_id)) if entry_id else None
        if not isinstance(found, cls) or found.deleted:
            raise NotFoundError(f"no {LABELS[kind]} '{ref}' in tenant '{tenant}'")
        return found

    def any_version(self, tenant: str, kind: str, cls: type[Configured], ref: str) -> UUID:
        """The id of a live resource named ref, or ref itself when it is the id of one
        that existed in this tenant (deleted ones included)."""
        entry_id = self._catalog(tenant).find(kind, ref, "id" if kind == INBOUND else "name")
        if entry_id is not None:
            return UUID(entry_id)
        try:
            aggregate_id = UUID(ref)
        except ValueError:
            raise NotFoundError(f"no {LABELS[kind]} '{ref}' in tenant '{tenant}'") from None
        found = self.app.aggregate(aggregate_id)
        if not isinstance(found, cls) or found.tenant != tenant:
            raise NotFoundError(f"no {LABELS[kind]} '{ref}' in tenant '{tenant}'")
        return aggregate_id

    def trunks(self, tenant: str, page_size: int, token: str, trunk_type: str = "",
               enabled: bool | None = None) -> Page:
        entries = self._catalog(tenant).entries[TRUNK]
        keys = sorted(
            (entry["name"].casefold(), entry_id) for entry_id, entry in entries.items()
            if (not trunk_type or entry["type"] == trunk_type)
            and (enabled is None or entry["enabled"] == enabled)
        )
        return self._page(keys, page_size, token, Trunk)

    def outbound_routes(self, tenant: str, page_size: int, token: str) -> Page:
        order = self._catalog(tenant).outbound_order
        return self._page([(f"{i:08d}", rid) for i, rid in enumerate(order)], page_size, token,
                          OutboundRoute)

    def inbound_routes(self, tenant: str, page_size: int, token: str) -> Page:
        entries = self._catalog(tenant).entries[INBOUND]
        keys = sorted((e["did_pattern"], rid) for rid, e in entries.items())
        return self._page(keys, page_size, token, InboundRoute)

    def _page(self, keys: list[tuple[str, str]], page_size: int, token: str,
              cls: type[C]) -> Page:
        size = _page_size(page_size)
        after = _decode_token(token)
        remaining = [k for k in keys if after is None or k > after]
        page = remaining[:size]
        items = [self.app.aggregate(UUID(entry_id)) for _, entry_id in page]
        next_token = _encode_token(page[-1]) if len(remaining) > size else ""
        return Page([i for i in items if isinstance(i, cls)], next_token, len(keys))

    def position_of(self, tenant: str, route_id: UUID) -> int:
        order = self._catalog(tenant).outbound_order
        return order.index(str(route_id)) + 1 if str(route_id) in order else 0

    def trunk_names(self, tenant: str) -> dict[str, str]:
        return {rid: e["name"] for rid, e in self._catalog(tenant).entries[TRUNK].items()}

    def resolve(self, tenant: str, number: str, extension: str) -> Resolution:
        catalog = self._catalog(tenant)
        routes = []
        for route_id in catalog.outbound_order:
            route = self.app.aggregate(UUID(route_id))
            if isinstance(route, OutboundRoute):
                routes.append((route_id, route.settings))
        trunks = {}
        for trunk_id in catalog.entries[TRUNK]:
            trunk = self.app.aggregate(UUID(trunk_id))
            if isinstance(trunk, Trunk):
                trunks[trunk_id] = trunk.settings
        return resolve_outbound(routes, trunks, number, extension)


def _page_size(page_size: int) -> int:
    if page_size < 0 or page_size > MAX_PAGE:
        raise ValidationError.single("page_size", f"must be 1 to {MAX_PAGE} (0 = {DEFAULT_PAGE})")
    return page_size or DEFAULT_PAGE


def _encode_token(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_token(token: str) -> tuple[str, str] | None:
    if not token:
        return None
    try:
        first, second = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(first), str(second)
    except (ValueError, TypeError):
        raise ValidationError.single(
            "page_token", "is not a token this service returned") from None
