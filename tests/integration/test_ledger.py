"""The proof written with the events, on SQLite and PostgreSQL: the log edited behind the
store's back (a flipped byte, a removed row, a forged re-encrypted event, a truncated tail,
a rewritten proof) is named by position and aggregate; heads saved before an edit fail
their consistency proof; inclusion proofs verify."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from domain import commands
from domain.application import TrunkplaneApp
from domain.model import CommandMeta
from infra.config.settings import Settings
from infra.ledger import decoder, proof_env
from infra.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from infra.ledger.proofs import Ledger
from infra.ledger.signing import HeadSigner, load_signer
from infra.ledger.tables import event_data
from infra.ledger.verify import Report, verify
from tests.conftest import CIPHER_KEY, settings_for

ALICE = CommandMeta(actor="alice")


class Store:
    """An application on the proof recorder, and raw SQL on its database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.app = TrunkplaneApp(env=proof_env(settings.store_env(CIPHER_KEY)))
        self.signer: HeadSigner = load_signer(settings)
        self.app.recorder.proof.signer = self.signer  # type: ignore[attr-defined]
        self.ledger = Ledger(self.app.recorder, self.signer)  # type: ignore[arg-type]

    @property
    def table(self) -> str:
        return "trunkplane_events" if self.settings.database_url else "stored_events"

    @property
    def key(self) -> str:
        return "notification_id" if self.settings.database_url else "rowid"

    def sql(self, statement: str, *params: Any) -> list[Any]:
        statement = statement.format(table=self.table, key=self.key)
        if self.settings.database_url:
            with psycopg.connect(self.settings.database_url, autocommit=True) as connection:
                cursor = connection.execute(statement.replace("?", "%s"), params)
                return cursor.fetchall() if cursor.description else []
        with sqlite3.connect(self.settings.data_dir / "events.sqlite") as connection:
            return connection.execute(statement, params).fetchall()

    def verify(self) -> Report:
        return verify(self.ledger, self.app.recorder, decoder(self.app), [self.signer.public])

    def trunk(self, name: str, tenant: str = "acme") -> UUID:
        raw = {"name": name, "type": "peer", "peer_addresses": ["192.0.2.1"],
               "codecs": ["PCMU"]}
        done = self.app.execute(lambda uow: commands.create_trunk(uow, tenant, raw, "", ALICE))
        return done.unwrap().aggregate.id

    def rename(self, name: str, new: str) -> None:
        self.app.execute(lambda uow: commands.update_trunk(
            uow, "acme", name, {"name": new}, "", ALICE)).unwrap()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = Store(settings_for(request.param, tmp_path, request))
    yield opened
    opened.app.close()


def populate(store: Store) -> None:
    store.trunk("voco")
    store.trunk("spare")
    store.rename("voco", "voco2")
    store.trunk("legacy")


def kinds(report: Report) -> list[tuple[str, int]]:
    return [(f.kind, f.position) for f in report.findings]


def test_every_event_has_its_leaf_and_a_signed_head(store: Store) -> None:
    populate(store)
    report = store.verify()
    assert report.intact and report.checked == store.app.head() == report.size
    assert report.signed is not None and report.signed.size == report.size
    assert report.signed.root == report.root == store.ledger.root(report.size)
    assert report.signed.verify(store.signer.public)


def test_the_proof_cannot_be_updated_or_deleted_by_sql(store: Store) -> None:
    populate(store)
    error = psycopg.Error if store.settings.database_url else sqlite3.Error
    with pytest.raises(error, match="append-only"):
        store.sql("UPDATE tp_ledger_leaves SET position = 99 WHERE idx = 0")
    with pytest.raises(error, match="append-only"):
        store.sql("DELETE FROM tp_ledger_heads")


def flip(store: Store, position: int) -> None:
    state = bytes(store.sql("SELECT state FROM {table} WHERE {key} = ?", position)[0][0])
    store.sql("UPDATE {table} SET state = ? WHERE {key} = ?",
              state[:-1] + bytes([state[-1] ^ 1]), position)


def forge(store: Store, position: int, actor: str) -> None:
    """Re-encrypts the event at `position` with the real key, with another actor: what
    someone holding the data directory (and so the cipher key) could do."""
    notification = store.app.recorder.select_notifications(position, 1)[0]
    event = store.app.mapper.to_domain_event(notification)
    forged: Any = dataclasses.replace(event, actor=actor)  # type: ignore[type-var]
    state = store.app.mapper.to_stored_event(forged).state
    store.sql("UPDATE {table} SET state = ? WHERE {key} = ?", state, position)


def test_a_flipped_byte_is_an_edit(store: Store) -> None:
    populate(store)
    flip(store, 3)
    report = store.verify()
    assert kinds(report) == [("edited", 3)]
    assert report.checked == store.app.head() - 1


def test_a_forged_event_reencrypted_with_the_key_is_named(store: Store) -> None:
    populate(store)
    forge(store, 5, "mallory")
    read: Any = store.app.mapper.to_domain_event(store.app.recorder.select_notifications(5, 1)[0])
    assert read.actor == "mallory"  # it reads well: only the proof tells
    assert kinds(store.verify()) == [("forged", 5)]


def test_a_removed_row_and_a_truncated_tail(store: Store) -> None:
    populate(store)
    head = store.app.head()
    store.sql("DELETE FROM {table} WHERE {key} = ?", 2)
    store.sql("DELETE FROM {table} WHERE {key} >= ?", head - 1)
    report = store.verify()
    assert kinds(report) == [("removed", 2), ("truncated", head - 1), ("truncated", head)]
    assert report.findings[0].subject_id and report.findings[0].version >= 1


def test_writing_after_a_truncation_is_refused(store: Store) -> None:
    populate(store)
    head = store.app.head()
    store.sql("DELETE FROM {table} WHERE {key} = ?", head)
    if store.settings.database_url:  # the sequence moves on: the new event has a new position
        store.trunk("after")
        assert kinds(store.verify()) == [("removed", head)]
        return
    with pytest.raises(RuntimeError, match="removed from the end"):
        store.trunk("after")  # SQLite reuses the rowid: appending would hide the hole


def insert_behind_the_back(store: Store) -> Any:
    """A copy of the first event, as version 99, written by SQL: the proof knows nothing of
    it. Returns the copied row (originator id, topic, state)."""
    populate(store)
    row = store.sql("SELECT originator_id, topic, state FROM {table} WHERE {key} = ?", 1)[0]
    if store.settings.database_url:
        store.sql("INSERT INTO {table} (originator_id, originator_version, topic, state) "
                  "VALUES (?, 99, ?, ?)", *row)
    else:
        store.sql("INSERT INTO {table} VALUES (?, 99, ?, ?)", *row)
    return row


def test_an_event_inserted_behind_the_back_is_named(store: Store) -> None:
    insert_behind_the_back(store)
    (finding,) = store.verify().findings
    assert finding.kind == "inserted" and finding.position == store.app.head()


def test_an_inserted_event_is_not_hidden_by_a_leaf_slipped_in_below_the_tree(
        store: Store) -> None:
    """A leaf row for the forged event outside the tree (idx -1) proves nothing."""
    row = insert_behind_the_back(store)
    forged = store.app.recorder.select_notifications(store.app.head(), 1)[0]
    leaf = leaf_hash(event_data(forged.id, forged.originator_id, forged.originator_version,
                                forged.topic, forged.state))
    store.sql("INSERT INTO tp_ledger_leaves VALUES (-1, ?, ?, 99, ?, ?)", forged.id,
              str(row[0]), leaf, leaf)
    (finding,) = store.verify().findings
    assert finding.kind == "inserted" and finding.position == store.app.head()


def test_a_rewritten_proof_is_caught_by_the_signed_heads(store: Store) -> None:
    """Someone edits an event and rewrites the proof to match, without the signing key:
    the recorded heads disagree with the kept signatures."""
    populate(store)
    flip(store, 2)
    stored = store.app.recorder.select_notifications(2, 1)[0]
    from infra.ledger.merkle import leaf_hash
    from infra.ledger.tables import event_data
    leaf = leaf_hash(event_data(2, stored.originator_id, stored.originator_version,
                                stored.topic, stored.state))
    for table in ("tp_ledger_leaves",):
        trigger = f"{table}_append_only" if store.settings.database_url else f"{table}_no_update"
        store.sql(f"DROP TRIGGER {trigger}" + (f" ON {table}" if store.settings.database_url
                                                else ""))
    store.sql("UPDATE tp_ledger_leaves SET leaf = ? WHERE position = ?", leaf, 2)
    found = {f.kind for f in store.verify().findings}
    assert "proof" in found and "signed_head" in found


def test_a_head_saved_before_an_edit_fails_its_consistency_proof(store: Store) -> None:
    populate(store)
    saved_size = store.ledger.size()
    saved = store.ledger.signed_head(saved_size, 0)
    store.trunk("later")
    proof = store.ledger.consistency(saved_size, store.ledger.size())
    assert verify_consistency(saved_size, store.ledger.size(), saved.root,
                              store.ledger.root(store.ledger.size()), proof)
    # an edit behind the back, with the tree recomputed to match (no signing key needed)
    flip(store, 2)
    edited = store.verify()
    assert edited.findings
    recomputed = _recomputed_roots(store)
    assert not verify_consistency(saved_size, len(recomputed), saved.root, recomputed[-1],
                                  proof)
    assert recomputed[saved_size - 1] != saved.root


def _recomputed_roots(store: Store) -> list[bytes]:
    from infra.ledger.merkle import Frontier, leaf_hash
    from infra.ledger.tables import event_data
    frontier, roots = Frontier(), []
    for n in store.app.recorder.select_notifications(0, 10_000):
        frontier.append(leaf_hash(event_data(n.id, n.originator_id, n.originator_version,
                                             n.topic, n.state)))
        roots.append(frontier.root())
    return roots


def test_inclusion_proofs_for_every_event(store: Store) -> None:
    populate(store)
    size = store.ledger.size()
    for position in range(1, store.app.head() + 1):
        proof = store.ledger.inclusion(position, size)
        assert verify_inclusion(proof.leaf, proof.index, size, proof.path, proof.root)
    early = store.ledger.inclusion(1, 3)
    assert early.root == store.ledger.root(3)
    assert verify_inclusion(early.leaf, early.index, 3, early.path, early.root)


def test_concurrent_writers_keep_one_tree(store: Store) -> None:
    """Threads writing at once (one tenant each, so that they do not conflict on the
    tenant's catalog) leave a tree whose heads hold."""
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(10):
                store.trunk(f"t{i}", tenant=f"tenant{worker}")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    report = store.verify()
    assert report.intact and report.size == store.app.head()
    assert report.signed is not None and report.signed.size == report.size


def test_undecryptable_events_are_findings(store: Store, tmp_path: Path) -> None:
    populate(store)
    other_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    reader = TrunkplaneApp(env=proof_env(store.settings.store_env(other_key)))
    try:
        report = verify(store.ledger, reader.recorder, decoder(reader), [store.signer.public])
    finally:
        reader.close()
    assert {f.kind for f in report.findings} == {"undecryptable"}
    assert len(report.findings) == store.app.head()
    assert time.time() > 0


def test_a_store_from_before_the_proof_is_adopted_as_it_is(store: Store) -> None:
    """Events written by the library's own recorder (an older release) become the first
    leaves when the proof recorder opens the store; later writes extend the same tree."""
    store.app.close()
    plain_env = store.settings.store_env(CIPHER_KEY)
    plain_env.pop("APPLICATION_RECORDER_TOPIC")
    if store.settings.database_url:
        store.sql("DROP TABLE tp_ledger_leaves, tp_ledger_nodes, tp_ledger_heads")
    else:
        for table in ("tp_ledger_leaves", "tp_ledger_nodes", "tp_ledger_heads"):
            store.sql(f"DROP TABLE {table}")
    old = TrunkplaneApp(env=plain_env)
    store.app = old
    populate(store)
    head = old.head()
    old.close()
    from infra.app.control import build_app
    store.app = build_app(store.settings)
    store.ledger = Ledger(store.app.recorder, store.signer)  # type: ignore[arg-type]
    assert store.ledger.size() == head
    store.trunk("after")
    report = store.verify()
    assert report.intact and report.size == store.app.head() == head + 2


def test_verifying_while_the_service_writes_finds_nothing(store: Store) -> None:
    """The notifier verifies on an interval while trunks change: an event written between
    the walk's reads of the log and of the proof is no finding (it once was: "truncated"
    or "inserted" alerts on an intact log)."""
    populate(store)
    stop = threading.Event()

    def write() -> None:
        name = "legacy"
        for n in range(10_000):
            if stop.is_set():
                return
            store.rename(name, f"legacy{n}")
            name = f"legacy{n}"

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reports: list[Report] = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline or len(reports) < 20:
            reports.append(store.verify())
    finally:
        stop.set()
        writer.join()
    assert [kinds(r) for r in reports if not r.intact] == []
    assert store.verify().intact and reports[-1].size > 4
