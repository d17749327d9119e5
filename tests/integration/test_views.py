"""The views themselves: exactly-once after a crash, point-in-time replay, and rebuilds
that do not interrupt reads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from domain import commands
from domain.application import TrunkplaneApp
from domain.model import CommandMeta
from infra.app.control import build_app
from infra.config.settings import Settings
from infra.store.views import open_views, view_store
from projections.audit import ChangeQuery, HistoryReader
from projections.runner import ProjectionRunner, Until
from projections.verify import verify
from projections.views import ViewStore
from tests.conftest import settings_for

RAW: dict[str, Any] = {"type": "register", "host": "sip.example.com", "username": "1001",
                       "password": "Long-Enough-Password-1", "codecs": ["PCMU"]}


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return settings_for(request.param, tmp_path, request)


@pytest.fixture
def app(settings: Settings) -> Iterator[TrunkplaneApp]:
    application = build_app(settings)
    yield application
    application.close()


def populate(app: TrunkplaneApp, trunks: int = 6, updates: int = 4) -> None:
    meta = CommandMeta("alice")
    for t in range(trunks):
        name = f"t{t}"
        app.execute(partial(commands.create_trunk, tenant="default",
                            raw={**RAW, "name": name}, template="", meta=meta)).unwrap()
        for u in range(updates):
            app.execute(partial(commands.update_trunk, tenant="default", ref=name,
                                patch={"description": f"change {u}"}, etag="",
                                meta=meta)).unwrap()


CRASHING_RUNNER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from infra.config.settings import Settings
    from infra.store.views import open_views, view_store
    from infra.app.control import build_app
    from projections.runner import ProjectionRunner
    from projections.views import HistoryProjection

    settings = Settings(data_dir=Path(sys.argv[1]), database_url=sys.argv[2],
                        cipher_key=sys.argv[3], listen="", log_level="WARNING")
    batches = 0
    original = HistoryProjection.apply

    def apply(self, cur, gen, batch):
        global batches
        batches += 1
        if batches == 3:  # the process dies with half of this batch written
            original(self, cur, gen, batch[: len(batch) // 2])
            os._exit(9)
        original(self, cur, gen, batch)

    HistoryProjection.apply = apply
    app = build_app(settings)
    store = view_store(settings, open_views(settings))
    ProjectionRunner(app, store, batch=7).catch_up("history", store.live("history"))
""")


def test_a_crash_in_the_middle_of_a_batch_applies_nothing_twice_and_skips_nothing(
    app: TrunkplaneApp, settings: Settings, tmp_path: Path,
) -> None:
    populate(app)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_RUNNER, str(settings.data_dir),
         settings.database_url, settings.cipher_key],
        capture_output=True, text=True, timeout=60, check=False)
    assert crashed.returncode == 9, crashed.stderr
    db = open_views(settings)
    try:
        store = view_store(settings, db)
        position, _ = store.position("history", store.live("history"))
        assert 0 < position < app.head()  # two batches committed, the third rolled back
        ProjectionRunner(app, store, batch=7).catch_up("history", store.live("history"))
        reached, differences = verify(app, store, "history", tmp_path)
        assert (reached, differences) == (app.head(), [])
        rows = list(HistoryReader(store).all(ChangeQuery()))
        assert len(rows) == 6 * 5
        assert len({r.position for r in rows}) == len(rows)
    finally:
        db.close()


def test_replay_until_a_position_or_a_time_gives_the_state_then(
    app: TrunkplaneApp, settings: Settings, tmp_path: Path,
) -> None:
    populate(app, trunks=1, updates=3)
    events = list(app.recorder.select_notifications(None, 100))
    middle = events[len(events) // 2]
    middle_event: Any = app.mapper.to_domain_event(middle)
    middle_time = middle_event.timestamp
    for name, until in (("by-position", Until(position=middle.id)),
                        ("by-time", Until(time=middle_time))):
        db = open_views(settings.__class__(
            data_dir=tmp_path / name, database_url="", cipher_key=settings.cipher_key,
            listen="", log_level="WARNING"))
        try:
            store = view_store(settings, db)
            runner = ProjectionRunner(app, store)
            for view in store.projections:
                assert runner.catch_up(view, 1, until) == middle.id
            rows = list(HistoryReader(store).all(ChangeQuery()))
            assert rows[-1].position <= middle.id
            with db.transaction() as cur:
                cur.execute("SELECT version FROM tp_config_g1 WHERE kind = 'trunk'")
                version = cur.fetchone()
            assert version is not None
            assert version[0] == rows[-1].version
        finally:
            db.close()


def test_reads_keep_the_old_view_until_the_rebuild_is_swapped_in(
    app: TrunkplaneApp, settings: Settings,
) -> None:
    populate(app, trunks=2, updates=2)
    db = open_views(settings)
    try:
        store: ViewStore = view_store(settings, db)
        runner = ProjectionRunner(app, store, batch=2)
        runner.catch_up_live()
        reader = HistoryReader(store)
        before = list(reader.all(ChangeQuery()))
        gen = store.begin_rebuild("history")
        runner.catch_up("history", gen, Until(position=3))
        assert list(reader.all(ChangeQuery())) == before  # still the live generation
        runner.catch_up("history", gen)
        store.swap("history", gen)
        assert store.live("history") == gen
        assert list(reader.all(ChangeQuery())) == before
    finally:
        db.close()
