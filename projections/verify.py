"""Compares a live view with a fresh rebuild of the same log prefix."""

from __future__ import annotations

from pathlib import Path

from domain.application import TrunkplaneApp
from projections.db import SqliteDatabase
from projections.runner import ProjectionRunner, Until
from projections.views import Projection, ViewStore

MAX_DIFFERENCES = 100


def verify(app: TrunkplaneApp, live: ViewStore, name: str,
           scratch_dir: Path) -> tuple[int, list[str]]:
    """Rebuilds `name` into a scratch SQLite store up to the live view's position and
    returns that position and the differences (empty when the views are equal)."""
    projection = live.projections[name]
    gen = live.live(name)
    position, _ = live.position(name, gen)
    scratch_db = SqliteDatabase(scratch_dir / f"verify-{name}.sqlite")
    try:
        scratch = ViewStore(scratch_db, [type(projection)(projection.fingerprint)])
        ProjectionRunner(app, scratch).catch_up(name, 1, Until(position=position))
        differences: list[str] = []
        for live_table, fresh_table in zip(projection.table_names(gen),
                                           projection.table_names(1), strict=True):
            differences += _compare(live, live_table, scratch, fresh_table, projection)
        return position, differences[:MAX_DIFFERENCES]
    finally:
        scratch_db.close()


def _rows(store: ViewStore, table: str) -> set[tuple[object, ...]]:
    with store.db.transaction() as cur:
        cur.execute(f"SELECT * FROM {table}")
        return {tuple(row) for row in cur.fetchall()}


def _compare(live: ViewStore, live_table: str, scratch: ViewStore, fresh_table: str,
             projection: Projection) -> list[str]:
    have, want = _rows(live, live_table), _rows(scratch, fresh_table)
    base = live_table.rsplit("_g", 1)[0]
    only_live = sorted(have - want, key=repr)
    only_fresh = sorted(want - have, key=repr)
    return ([f"{base}: row in the live view but not in a rebuild: {row!r}"
             for row in only_live]
            + [f"{base}: row missing from the live view: {row!r}" for row in only_fresh])
