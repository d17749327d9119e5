"""Backup while writers keep writing, restore into an empty store: the same log position
for position, a proof that verifies, and the head saved in the backup among its heads; on
SQLite and PostgreSQL, and across them."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infra.config.settings import Settings
from infra.ledger.backup import (
    Keys,
    RestoreError,
    Source,
    backup,
    open_keys,
    read_manifest,
    restore_rows,
)
from infra.security.sealing import PassphraseSealer as Sealer
from tests.conftest import CIPHER_KEY, settings_for
from tests.integration.test_ledger import Store, populate

PASSPHRASE = "correct horse battery"


def source_of(settings: Settings) -> Source:
    return Source(None if settings.database_url else settings.data_dir / "events.sqlite",
                  settings.database_url)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = Store(settings_for(request.param, tmp_path / "source", request))
    yield opened
    opened.app.close()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(data_dir=tmp_path / "target", database_url="", cipher_key=CIPHER_KEY,
                       listen="127.0.0.1:0", log_level="WARNING")
        return
    admin = request.getfixturevalue("postgres_url")
    name = f"trunkplane_restore_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    yield Settings(data_dir=tmp_path / "target", database_url=url, cipher_key=CIPHER_KEY,
                   listen="127.0.0.1:0", log_level="WARNING")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def keys_of(store: Store) -> Keys:
    import base64

    from cryptography.hazmat.primitives import serialization
    raw = store.signer.private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())
    return Keys(f"k0:{CIPHER_KEY}", base64.b64encode(raw).decode())


def test_backup_during_writes_restores_the_same_history(
        store: Store, empty_target: Settings, tmp_path: Path) -> None:
    populate(store)
    stop = threading.Event()
    written: list[int] = []

    def keep_writing() -> None:
        while not stop.is_set():
            store.trunk(f"w{len(written)}")
            written.append(1)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        while len(written) < 5:
            stop.wait(0.01)
        summary = backup(source_of(store.settings), tmp_path / "b.tpbackup",
                         keys_of(store), Sealer(PASSPHRASE))
        after = len(written)
        while len(written) < after + 2:  # one write may have been in flight
            stop.wait(0.01)
    finally:
        stop.set()
        writer.join()
    assert summary.events >= 8 + 5 * 2 and summary.head_size == summary.events
    assert store.app.head() > summary.last_position  # the writes went on meanwhile

    manifest = read_manifest(tmp_path / "b.tpbackup")
    keys = open_keys(manifest, Sealer(PASSPHRASE, _salt(manifest)))
    assert keys == keys_of(store)
    restored = Store(empty_target)
    try:
        assert restore_rows(tmp_path / "b.tpbackup", restored.app.recorder,
                            bool(empty_target.database_url)) == summary.events
        restored.signer = store.signer  # as `trunkplane restore` brings the key back
        restored.app.recorder.proof.signer = store.signer  # type: ignore[attr-defined]
        report = restored.verify()
        assert report.intact and report.size == summary.head_size
        assert report.root.hex() == summary.head_root == manifest["head_root"]
        assert report.signed is not None and report.signed.size == summary.head_size
        original = store.app.recorder.select_notifications(0, summary.events + 1,
                                                           stop=summary.last_position)
        copy = restored.app.recorder.select_notifications(0, summary.events + 1)
        assert [(n.id, n.originator_id, n.originator_version, n.state) for n in original] \
            == [(n.id, n.originator_id, n.originator_version, n.state) for n in copy]
        restored.trunk("after-restore")  # it goes on writing, proof and all
        assert restored.verify().intact
    finally:
        restored.app.close()


def test_restore_refuses_a_store_that_is_not_empty(store: Store, tmp_path: Path) -> None:
    populate(store)
    backup(source_of(store.settings), tmp_path / "b.tpbackup", keys_of(store),
           Sealer(PASSPHRASE))
    with pytest.raises(RestoreError, match="not empty"):
        restore_rows(tmp_path / "b.tpbackup", store.app.recorder,
                     bool(store.settings.database_url))


def _salt(manifest: dict[str, str]) -> bytes:
    import base64
    import json
    return base64.b64decode(json.loads(manifest["kdf"])["salt"])
