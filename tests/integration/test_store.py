"""The event store itself: secrets encrypted at rest, the key file, and two writers that
share one store (as two control-plane processes do)."""

from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from domain import commands
from domain.application import TrunkplaneApp
from domain.errors import AlreadyExistsError
from domain.model import CommandMeta
from domain.trunk import Trunk
from domain.unit_of_work import UnitOfWork
from infra.app.control import build_app
from infra.config.settings import Settings, SettingsError
from infra.security.keys import KEY_FILE, MAGIC, cipher_key, rotate
from tests.conftest import settings_for

SECRET = "Unmistakable-Secret-Value-9000"
RAW: dict[str, Any] = {"name": "voco", "type": "register", "host": "sip.example.com",
                       "username": "1001", "password": SECRET, "codecs": ["PCMU"]}


def create(app: TrunkplaneApp, name: str = "voco") -> None:
    app.execute(lambda uow: commands.create_trunk(
        uow, "default", {**RAW, "name": name}, "", CommandMeta("alice"))).unwrap()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_stored_events_are_encrypted(backend: str, tmp_path: Path,
                                     request: pytest.FixtureRequest) -> None:
    settings = settings_for(backend, tmp_path, request)
    app = build_app(settings)
    create(app, "Plainly-Named-Trunk")
    app.close()
    if backend == "sqlite":
        stored = b"".join(p.read_bytes() for p in settings.data_dir.glob("events.sqlite*"))
    else:
        with psycopg.connect(settings.database_url) as connection:
            rows = connection.execute("SELECT state FROM trunkplane_events").fetchall()
        stored = b"".join(bytes(row[0]) for row in rows)
    assert stored, "nothing was stored"
    for clear in (SECRET.encode(), b"Plainly-Named-Trunk", b"sip.example.com"):
        assert clear not in stored


def test_first_start_creates_a_private_key_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url="", cipher_key="",
                        listen="127.0.0.1:0", log_level="WARNING")
    key = cipher_key(settings)
    path = settings.data_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cipher_key(settings) == key
    app = build_app(settings)
    create(app)
    app.close()
    reopened = build_app(settings)
    catalog = reopened.catalog("default")
    assert catalog is not None and catalog.find("trunk", "voco") is not None
    reopened.close()


@pytest.mark.parametrize("key", ["not base64!", "c2hvcnQ="])
def test_bad_cipher_key_is_refused(tmp_path: Path, key: str) -> None:
    settings = Settings(data_dir=tmp_path, database_url="", cipher_key=key,
                        listen="127.0.0.1:0", log_level="WARNING")
    with pytest.raises(SettingsError, match="TRUNKPLANE_CIPHER_KEY"):
        cipher_key(settings)


@pytest.fixture(params=["sqlite", "postgres"])
def two_processes(request: pytest.FixtureRequest,
                  tmp_path: Path) -> Iterator[tuple[TrunkplaneApp, TrunkplaneApp]]:
    """Two applications on one store, as two control-plane processes would be."""
    settings = settings_for(request.param, tmp_path, request)
    first, second = build_app(settings), build_app(settings)
    yield first, second
    first.close()
    second.close()


def test_a_change_by_another_process_is_seen_at_once(
    two_processes: tuple[TrunkplaneApp, TrunkplaneApp],
) -> None:
    first, second = two_processes
    create(first)
    catalog = first.catalog("default")
    assert catalog is not None
    trunk_id = UUID(str(catalog.find("trunk", "voco")))
    cached = first.aggregate(trunk_id)
    assert isinstance(cached, Trunk) and cached.version == 1  # now cached in first
    second.execute(lambda uow: commands.update_trunk(
        uow, "default", "voco", {"host": "moved.example.com"}, "",
        CommandMeta("bob", may_move_credentials=True))).unwrap()
    seen = first.aggregate(trunk_id)
    assert isinstance(seen, Trunk)
    assert (seen.version, seen.settings["host"]) == (2, "moved.example.com")
    done = first.execute(lambda uow: commands.update_trunk(
        uow, "default", "voco", {"dtmf_mode": "info"}, "", CommandMeta("alice")))
    assert done.unwrap().aggregate.version == 3


def test_two_writers_on_one_store_cannot_both_take_a_name(
    two_processes: tuple[TrunkplaneApp, TrunkplaneApp],
) -> None:
    first, second = two_processes
    create(first, "seed")
    raced = threading.Event()

    def create_while_the_other_writer_wins(uow: UnitOfWork) -> commands.Outcome:
        outcome = commands.create_trunk(uow, "default", {**RAW, "name": "contested"}, "",
                                        CommandMeta("alice"))
        if not raced.is_set():  # between our read and our save, the other process commits
            raced.set()
            create(second, "CONTESTED")
        return outcome

    done = first.execute(create_while_the_other_writer_wins)
    assert raced.is_set()
    assert isinstance(done.error, AlreadyExistsError)
    catalog = first.catalog("default")
    assert catalog is not None
    assert sorted(e["name"] for e in catalog.entries["trunk"].values()) == ["CONTESTED", "seed"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_after_a_key_rotation_old_events_stay_readable_and_new_ones_use_the_new_key(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    settings = replace(settings_for(backend, tmp_path, request), cipher_key="")
    app = build_app(settings)
    create(app, "before")
    app.close()
    assert rotate(settings) == "k1"
    app = build_app(settings)
    create(app, "after")
    catalog = app.catalog("default")
    assert catalog is not None
    names = sorted(e["name"] for e in catalog.entries["trunk"].values())
    app.close()
    assert names == ["after", "before"]
    if backend == "sqlite":
        with sqlite3.connect(settings.data_dir / "events.sqlite") as connection:
            states = [bytes(r[0]) for r in connection.execute(
                "SELECT state FROM stored_events ORDER BY rowid")]
    else:
        with psycopg.connect(settings.database_url) as connection:
            states = [bytes(r[0]) for r in connection.execute(
                "SELECT state FROM trunkplane_events ORDER BY notification_id").fetchall()]
    assert not states[0].startswith(MAGIC)
    assert states[-1].startswith(MAGIC + b"\x02k1")
