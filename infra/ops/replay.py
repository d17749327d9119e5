"""`trunkplane replay`: every view as of a past point, built into a directory of its own
from the live event store, which it only reads."""

from __future__ import annotations

import json
from pathlib import Path

from domain.application import TrunkplaneApp
from infra.config.settings import Settings, SettingsError
from infra.security.keys import cipher_key
from infra.store.views import view_store
from projections.db import SqliteDatabase
from projections.runner import ProjectionRunner, Until

MAX_POSITION = 2**63 - 1  # the largest log position a store can hold


def replay(settings: Settings, into: Path, until: Until) -> dict[str, int]:
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise SettingsError(f"{into} is not empty (or not a directory); replay builds into "
                            "a new directory")
    if until.position is not None and not 0 <= until.position <= MAX_POSITION:
        raise SettingsError(f"--position must be 0 to {MAX_POSITION}, not {until.position}")
    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    app = TrunkplaneApp(env=settings.store_env(cipher_key(settings, create=False)))
    db = SqliteDatabase(into / "views.sqlite")
    try:
        store = view_store(settings, db)
        runner = ProjectionRunner(app, store)
        reached = {name: runner.catch_up(name, store.live(name), until)
                   for name in store.projections}
    finally:
        db.close()
        app.close()
    (into / "REPLAY.json").write_text(json.dumps({
        "source": settings.describe_store(),
        "until_position": until.position,
        "until_time": until.time.isoformat() if until.time else None,
        "views": reached,
    }, indent=2) + "\n")
    return reached
