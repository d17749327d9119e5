"""`trunkplane backup` while a real `trunkplane serve` takes writes, `trunkplane restore`
into an empty data directory (SQLite) or an empty database (PostgreSQL), a service started
on the restored store: `audit verify` shows the backup's head, and every actor and reason
is as it was."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.integration.test_cli import CLI, Server

PASSPHRASE = "a long enough passphrase\n"


def _create(server: Server, name: str) -> None:
    created = server.cli("trunk", "create", name, "--type", "peer", "--peer", "192.0.2.1",
                         "--codecs", "PCMU", "--reason", f"ticket {name}")
    assert created.returncode == 0, created.stderr


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(source URL, empty target URL) for PostgreSQL; ("", "") for SQLite."""
    if request.param == "sqlite":
        yield "", ""
        return
    admin = request.getfixturevalue("postgres_url")
    names = [f"trunkplane_hist_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(admin, autocommit=True) as connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        for name in names:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_backup_during_writes_and_restore(tmp_path: Path, database: tuple[str, str]) -> None:
    source_url, target_url = database
    source = Server(tmp_path / "a", **({"TRUNKPLANE_DATABASE_URL": source_url}
                                       if source_url else {}))
    (tmp_path / "a").mkdir()
    source.start()
    try:
        for name in ("voco", "spare"):
            _create(source, name)
        stop, made = threading.Event(), list[int]()

        def keep_writing() -> None:
            while not stop.is_set():
                _create(source, f"w{len(made)}")
                made.append(1)

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            env = {**source.local_env(), **({"TRUNKPLANE_DATABASE_URL": source_url}
                                            if source_url else {})}
            backup = subprocess.run(
                [*CLI, "--json", "backup", "--output", str(tmp_path / "h.tpbackup"),
                 "--passphrase-stdin"], env=env, input=PASSPHRASE, capture_output=True,
                text=True, timeout=60, check=False)
        finally:
            stop.set()
            writer.join()
        assert backup.returncode == 0, backup.stderr
        saved = json.loads(backup.stdout)
        assert saved["events"] == saved["head_size"] >= 4
    finally:
        source.stop()

    target_env = {"TRUNKPLANE_DATA": str(tmp_path / "b" / "var")}
    if target_url:
        target_env["TRUNKPLANE_DATABASE_URL"] = target_url
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRUNKPLANE_CIPHER_KEY", "TRUNKPLANE_DATABASE_URL")} | target_env
    wrong = subprocess.run([*CLI, "restore", str(tmp_path / "h.tpbackup"),
                             "--passphrase-stdin"], env=env, input="not the passphrase\n",
                            capture_output=True, text=True, timeout=60, check=False)
    assert wrong.returncode != 0 and "passphrase" in wrong.stderr
    restored = subprocess.run([*CLI, "--json", "restore", str(tmp_path / "h.tpbackup"),
                                "--passphrase-stdin"], env=env, input=PASSPHRASE,
                               capture_output=True, text=True, timeout=120, check=False)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    answer = json.loads(restored.stdout)
    assert answer["equal_to_backup"] and answer["head_root"] == saved["head_root"]

    (tmp_path / "b").mkdir(exist_ok=True)
    target = Server(tmp_path / "b", **({"TRUNKPLANE_DATABASE_URL": target_url}
                                       if target_url else {}))
    target.start()
    try:
        verify = target.cli("--json", "audit", "verify")
        assert verify.returncode == 0, verify.stdout
        report = json.loads(verify.stdout)
        assert int(report["signed_head"]["tree_size"]) >= saved["head_size"]
        head = target.cli("--json", "audit", "head", "--size", str(saved["head_size"]))
        assert base64.b64decode(json.loads(head.stdout)["root_hash"]).hex() == \
            saved["head_root"]
        history = target.cli("--json", "audit", "list", "--subject", "voco")
        entries = json.loads(history.stdout)["changes"]
        assert entries[0]["entry"]["reason"] == "ticket voco"
        assert entries[0]["entry"]["actor"] == "ops@example.com"  # not the restorer
    finally:
        target.stop()
