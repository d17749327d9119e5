"""Reads of the current configuration from the config view: a trunk or route, pages of
them, and outbound resolution. Every read first makes sure the view has applied the log up
to the position the caller asks for (by default the log's head at the time of the call),
so a client reads its own writes."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.errors import NotFoundError, PreconditionError, ValidationError
from domain.routing import Resolution, resolve_outbound
from domain.text import fold_name
from projections.state import Doc, display_name
from projections.views import ViewStore

MAX_PAGE = 500
DEFAULT_PAGE = 50
READ_WAIT = 10.0
LABELS = {"trunk": "trunk", "outbound": "outbound route", "inbound": "inbound route",
          "pbx": "PBX", "channel": "notification channel", "alert_rules": "alert rules"}


@dataclass(frozen=True)
class Page:
    items: list[Doc]
    next_page_token: str
    total_size: int


class ConfigView:
    def __init__(self, store: ViewStore, head: Callable[[], int],
                 wait_for: Callable[[int, float], bool]) -> None:
        self.store = store
        self._head = head
        self._wait_for = wait_for

    def ready(self, min_position: int = 0, wait: float = READ_WAIT) -> int:
        """Waits until the views reflect `min_position` (0: the log's head now; negative:
        do not wait) and returns the position the config view reflects."""
        target = self._head() if min_position == 0 else min_position
        if min_position >= 0 and not self._wait_for(target, wait):
            raise PreconditionError(
                f"the views have not reached log position {target} within {wait:.1f} s; "
                "see `trunkplane projections status`")
        return self.store.position("config", self.store.live("config"))[0]

    def get(self, tenant: str, kind: str, ref: str) -> Doc:
        doc = self._find(tenant, kind, ref, include_deleted=False)
        if doc is None:
            raise NotFoundError(f"no {LABELS[kind]} '{ref}' in tenant '{tenant}'")
        return doc

    def subject_id(self, tenant: str, kind: str, ref: str) -> str:
        """The id of a live resource named ref, or of any that had id ref, deleted or not."""
        doc = self._find(tenant, kind, ref, include_deleted=True)
        if doc is None:
            raise NotFoundError(f"no {LABELS[kind]} '{ref}' in tenant '{tenant}'")
        return str(doc["id"])

    def _find(self, tenant: str, kind: str, ref: str, include_deleted: bool) -> Doc | None:
        rows = self._select("tenant = ? AND kind = ? AND id = ?", [tenant, kind, ref])
        if not include_deleted:
            rows = [r for r in rows if not r["deleted"]]
        if not rows and kind != "inbound":
            rows = self._select("tenant = ? AND kind = ? AND sort_key = ? AND deleted = 0",
                                [tenant, kind, fold_name(ref.strip())])
        return rows[0] if rows else None

    def trunks(self, tenant: str, page_size: int, token: str, trunk_type: str = "",
               enabled: bool | None = None) -> Page:
        where, params = "tenant = ? AND kind = 'trunk' AND deleted = 0", [tenant]
        if trunk_type:
            where += " AND type = ?"
            params.append(trunk_type)
        if enabled is not None:
            where += " AND enabled = ?"
            params.append(int(enabled))  # type: ignore[arg-type]
        return self._keyset_page(where, params, page_size, token)

    def inbound_routes(self, tenant: str, page_size: int, token: str) -> Page:
        return self._keyset_page("tenant = ? AND kind = 'inbound' AND deleted = 0", [tenant],
                                 page_size, token)

    def outbound_routes(self, tenant: str, page_size: int, token: str) -> Page:
        order = self.outbound_order(tenant)
        size = _page_size(page_size)
        start = _decode_offset(token) if token else 0
        ids = order[start:start + size]
        docs = {d["id"]: d for d in self._by_ids(ids)}
        more = start + size < len(order)
        return Page([docs[i] for i in ids if i in docs],
                    _encode_token((str(start + size), "")) if more else "", len(order))

    def outbound_order(self, tenant: str) -> list[str]:
        table = self.store.projections["config"].table_names(self.store.live("config"))[1]
        with self.store.db.transaction() as cur:
            cur.execute(f"SELECT route_ids FROM {table} WHERE tenant = ?", (tenant,))
            row = cur.fetchone()
        return [] if row is None else list(json.loads(row[0]))

    def pbx(self, tenant: str) -> Doc | None:
        """The tenant's PBX access (secrets as fingerprints), None until first set."""
        rows = self._select("tenant = ? AND kind = 'pbx'", [tenant])
        return rows[0] if rows else None

    def pbxes(self) -> list[Doc]:
        """Every tenant's PBX access (secrets as fingerprints), by tenant."""
        return self._select("kind = 'pbx'", [], order="tenant")

    def trunk_docs(self, tenant: str) -> list[Doc]:
        return self._select("tenant = ? AND kind = 'trunk' AND deleted = 0", [tenant])

    def channel_docs(self, tenant: str) -> list[Doc]:
        """The tenant's notification channels (secrets as fingerprints)."""
        return self._select("tenant = ? AND kind = 'channel' AND deleted = 0", [tenant])

    def alert_rules(self, tenant: str) -> Doc | None:
        rows = self._select("tenant = ? AND kind = 'alert_rules'", [tenant])
        return rows[0] if rows else None

    def every_trunk(self) -> list[Doc]:
        """Every live trunk of every tenant (metrics label their series with the names)."""
        return self._select("kind = 'trunk' AND deleted = 0", [])

    def trunk_doc(self, tenant: str, trunk_id: str) -> Doc | None:
        return self._find(tenant, "trunk", trunk_id, include_deleted=False)

    def tenants(self) -> list[str]:
        sql = f"SELECT DISTINCT tenant FROM {self._table()} ORDER BY tenant"
        with self.store.db.transaction() as cur:
            cur.execute(sql)
            return [str(row[0]) for row in cur.fetchall()]

    def trunk_names(self, tenant: str) -> dict[str, str]:
        return {d["id"]: d["settings"]["name"]
                for d in self._select("tenant = ? AND kind = 'trunk'", [tenant])}

    def resolve(self, tenant: str, number: str, extension: str) -> Resolution:
        order = self.outbound_order(tenant)
        routes = {d["id"]: d for d in self._by_ids(order)}
        trunks = {d["id"]: d["settings"] for d in self._select(
            "tenant = ? AND kind = 'trunk' AND deleted = 0", [tenant])}
        ordered = [(rid, routes[rid]["settings"]) for rid in order if rid in routes]
        return resolve_outbound(ordered, trunks, number, extension)

    def _keyset_page(self, where: str, params: list[Any], page_size: int, token: str) -> Page:
        size = _page_size(page_size)
        total = self._count(where, params)
        if token:
            where += " AND (sort_key > ? OR (sort_key = ? AND id > ?))"
            sort_key, last_id = _decode_token(token)
            params = [*params, sort_key, sort_key, last_id]
        rows = self._select(where, params, order="sort_key, id", limit=size + 1)
        page = rows[:size]
        more = len(rows) > size
        last = page[-1] if page else None
        next_token = _encode_token((fold_name(display_name(last)), last["id"])) if (
            more and last) else ""
        return Page(page, next_token, total)

    def _table(self) -> str:
        return self.store.projections["config"].table_names(self.store.live("config"))[0]

    def _select(self, where: str, params: list[Any], order: str = "sort_key, id",
                limit: int | None = None) -> list[Doc]:
        sql = f"SELECT doc FROM {self._table()} WHERE {where} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.store.db.transaction() as cur:
            cur.execute(sql, params)
            return [json.loads(row[0]) for row in cur.fetchall()]

    def _count(self, where: str, params: list[Any]) -> int:
        sql = f"SELECT COUNT(*) FROM {self._table()} WHERE {where}"
        with self.store.db.transaction() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def _by_ids(self, ids: list[str]) -> list[Doc]:
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        return self._select(f"id IN ({marks})", list(ids))


def _page_size(page_size: int) -> int:
    if page_size < 0 or page_size > MAX_PAGE:
        raise ValidationError.single("page_size", f"must be 1 to {MAX_PAGE} (0 = {DEFAULT_PAGE})")
    return page_size or DEFAULT_PAGE


def _encode_token(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_offset(token: str) -> int:
    text = _decode_token(token)[0]
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise ValidationError.single("page_token", "is not a token this service returned")
    return int(text)


def _decode_token(token: str) -> tuple[str, str]:
    try:
        first, second = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(first), str(second)
    except (ValueError, TypeError):
        raise ValidationError.single(
            "page_token", "is not a token this service returned") from None
