"""Actions outside the configuration are events with a history row of their own; filters
on an event type nobody knows get a hint; names are found across renames and deletions."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain import commands
from domain.application import TrunkplaneApp
from domain.errors import ValidationError
from domain.model import CommandMeta
from domain.operations import OperatorAction
from projections.audit import ChangeQuery, HistoryReader, event_type_hint, known_event_types
from projections.db import SqliteDatabase
from projections.runner import ProjectionRunner
from projections.views import HistoryProjection, ViewStore

ADMIN = CommandMeta(actor="admin@example.com", reason="quarterly", request_id="r1")
TRUNK = {"name": "legacy", "type": "peer", "peer_addresses": ["192.0.2.1"], "codecs": ["PCMU"]}



def reader(app: TrunkplaneApp, tmp_path: Path) -> HistoryReader:
    store = ViewStore(SqliteDatabase(tmp_path / "views.sqlite"),
                      [HistoryProjection(lambda s: s)])
    ProjectionRunner(app, store).catch_up("history", store.live("history"))
    return HistoryReader(store)


def test_an_operator_action_has_its_history_row(app: TrunkplaneApp, tmp_path: Path) -> None:
    app.save(OperatorAction.record("acme", "secrets_exported", {"tenants": "acme"}, ADMIN))
    (row,) = reader(app, tmp_path).all(ChangeQuery(event_type="SecretsExported"))
    assert (row.subject_kind, row.subject_name, row.actor, row.tenant) == (
        "operation", "secrets_exported", "admin@example.com", "acme")
    assert [(c.field, c.new_value) for c in row.changes] == [("tenants", "acme")]
    with pytest.raises(ValidationError, match="not one of"):
        OperatorAction.record("acme", "coffee_made", {}, ADMIN)


def test_every_trunk_that_ever_had_a_name(app: TrunkplaneApp, tmp_path: Path) -> None:
    app.execute(lambda uow: commands.create_trunk(uow, "acme", TRUNK, "", ADMIN)).unwrap()
    app.execute(lambda uow: commands.delete_trunk(uow, "acme", "legacy", "", ADMIN)).unwrap()
    app.execute(lambda uow: commands.create_trunk(uow, "acme", TRUNK, "", ADMIN)).unwrap()
    app.execute(lambda uow: commands.update_trunk(
        uow, "acme", "legacy", {"name": "modern"}, "", ADMIN)).unwrap()
    history = reader(app, tmp_path)
    ids = history.subjects_named("acme", "LEGACY")
    assert len(ids) == 2
    rows = list(history.all(ChangeQuery(subject_ids=tuple(ids))))
    assert {r.subject_id for r in rows} == set(ids)
    assert rows[-1].subject_name == "modern"  # renamed since, still found by its old name
    assert [r.event_type for r in rows].count("TrunkDeleted") == 1
    assert history.actors_like("ADMIN") == ["admin@example.com"]


def test_unknown_event_types_get_a_hint() -> None:
    known = known_event_types()
    assert "CredentialsChanged" in known and "AccessRefused" in known and "Event" not in known
    assert event_type_hint("CredentialsChanged", known) == ""
    assert "did you mean CredentialsChanged" in event_type_hint("credentialschanged", known)
    assert "known types:" in event_type_hint("Zzz", known)
