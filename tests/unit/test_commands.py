"""Command handlers on an in-memory store: what each command records, and the rules that
span aggregates."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from domain import commands
from domain.application import TrunkplaneApp
from domain.errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    PreconditionError,
    ValidationError,
)
from domain.model import CommandMeta, event_name
from domain.trunk import Trunk
from projections.audit import ChangeQuery, ChangeRow, HistoryReader
from projections.db import SqliteDatabase
from projections.runner import ProjectionRunner
from projections.views import HistoryProjection, ViewStore

ALICE = CommandMeta(actor="alice", reason="ticket-7", request_id="req-1",
                    may_move_credentials=True)  # an admin
VOCO: dict[str, Any] = {"name": "voco", "username": "1001", "password": "s3cret-password-xyz"}



def events_of(app: TrunkplaneApp, aggregate_id: UUID) -> list[Any]:
    return list(app.events.get(aggregate_id))


def create(app: TrunkplaneApp, raw: dict[str, Any] = VOCO, template: str = "thevoco",
           meta: CommandMeta = ALICE) -> Trunk:
    done = app.execute(lambda uow: commands.create_trunk(uow, "default", raw, template, meta))
    trunk = done.unwrap().aggregate
    assert isinstance(trunk, Trunk)
    return trunk


def update(app: TrunkplaneApp, patch: dict[str, Any], etag: str = "",
           meta: CommandMeta = ALICE) -> commands.Outcome:
    return app.execute(lambda uow: commands.update_trunk(
        uow, "default", "voco", patch, etag, meta)).unwrap()


def test_template_plus_overrides(app: TrunkplaneApp) -> None:
    trunk = create(app, {**VOCO, "codecs": ["OPUS"]})
    assert trunk.settings["host"] == "sip.thevoco.com"
    assert trunk.settings["codecs"] == ["OPUS"]
    with pytest.raises(ValidationError, match="replace <yourdomain>"):
        create(app, {**VOCO, "name": "tw"}, template="twilio")
    with pytest.raises(ValidationError, match="unknown template 'nope'"):
        create(app, template="nope")


def test_names_are_unique_ignoring_case(app: TrunkplaneApp) -> None:
    create(app)
    with pytest.raises(AlreadyExistsError, match="trunk 'VOCO' already exists"):
        create(app, {**VOCO, "name": "VOCO"})


def test_each_change_is_its_own_event_with_the_actor(app: TrunkplaneApp) -> None:
    trunk = create(app)
    update(app, {"codecs": ["OPUS", "PCMA", "PCMU"], "host": "sip2.thevoco.com",
                 "call_limits": {"max_concurrent_calls": 4}, "enabled": False},
           meta=CommandMeta(actor="bob", may_move_credentials=True))
    events = events_of(app, trunk.id)
    assert [event_name(e) for e in events] == [
        "TrunkCreated", "TrunkDisabled", "CallLimitsChanged", "CodecsReordered", "ServerChanged"]
    assert {e.actor for e in events[1:]} == {"bob"}
    assert events[0].reason == "ticket-7"
    update(app, {"codecs": ["G729"]})
    assert event_name(events_of(app, trunk.id)[-1]) == "CodecsChanged"


def test_an_update_that_changes_nothing_records_nothing(app: TrunkplaneApp) -> None:
    trunk = create(app)
    update(app, {"host": "sip.thevoco.com"})
    assert len(events_of(app, trunk.id)) == 1


def test_stale_etag_is_a_conflict_and_changes_nothing(app: TrunkplaneApp) -> None:
    trunk = create(app)
    stale = trunk.etag
    update(app, {"host": "a.example.com"}, etag=stale)
    with pytest.raises(ConflictError, match="has changed since it was read"):
        update(app, {"host": "b.example.com"}, etag=stale)
    current = app.aggregate(trunk.id)
    assert isinstance(current, Trunk)
    assert current.settings["host"] == "a.example.com"


def test_bad_update_changes_nothing(app: TrunkplaneApp) -> None:
    trunk = create(app)
    with pytest.raises(ValidationError):
        update(app, {"host": "a.example.com", "codecs": []})
    assert len(events_of(app, trunk.id)) == 1


def route(app: TrunkplaneApp, name: str = "US", trunks: tuple[str, ...] = ("voco",),
          position: int | None = None) -> commands.Outcome:
    raw = {"name": name, "dial_patterns": [{"match": "NXXNXXXXXX"}],
           "trunks": [{"trunk_id": t} for t in trunks]}
    return app.execute(lambda uow: commands.create_outbound_route(
        uow, "default", raw, position, ALICE)).unwrap()


def test_deleting_a_trunk_in_use_names_the_routes(app: TrunkplaneApp) -> None:
    create(app)
    route(app, "US")
    route(app, "Canada")
    with pytest.raises(PreconditionError, match="used by routes: Canada, US") as caught:
        app.execute(lambda uow: commands.delete_trunk(uow, "default", "voco", "", ALICE)).unwrap()
    assert caught.value.subjects == ["Canada", "US"]


def test_routes_need_existing_trunks_and_keep_their_order(app: TrunkplaneApp) -> None:
    create(app)
    with pytest.raises(ValidationError, match="no trunk 'ghost'"):
        route(app, trunks=("ghost",))
    first = route(app, "A").aggregate
    second = route(app, "B", position=1).aggregate
    catalog = app.catalog("default")
    assert catalog is not None
    assert catalog.outbound_order == [str(second.id), str(first.id)]


def history(app: TrunkplaneApp, trunk_id: UUID, tmp_path: Path) -> list[ChangeRow]:
    """The history view of the trunk, built by the real projection into SQLite."""
    db = SqliteDatabase(tmp_path / "views.sqlite")
    try:
        store = ViewStore(db, [HistoryProjection(lambda secret: f"fp-{len(secret)}")])
        ProjectionRunner(app, store).catch_up("history", 1)
        return list(HistoryReader(store).all(ChangeQuery(subject_id=str(trunk_id))))
    finally:
        db.close()


def test_deleted_trunk_is_gone_but_its_history_stays(app: TrunkplaneApp,
                                                     tmp_path: Path) -> None:
    trunk = create(app)
    app.execute(lambda uow: commands.delete_trunk(uow, "default", "voco", "", ALICE)).unwrap()
    with pytest.raises(NotFoundError):
        update(app, {"host": "x.example.com"})
    entries = history(app, trunk.id, tmp_path)
    assert [e.event_type for e in entries] == ["TrunkCreated", "TrunkDeleted"]
    create(app)  # the name is free again


def test_history_shows_secrets_only_as_changed(app: TrunkplaneApp, tmp_path: Path) -> None:
    trunk = create(app)
    update(app, {"password": "another-long-password"})
    update(app, {"username": "1002"})
    entries = history(app, trunk.id, tmp_path)
    rendered = repr(entries)
    assert "s3cret" not in rendered and "another-long" not in rendered
    created = {c.field: c for c in entries[0].changes}
    assert (created["password"].old_value, created["password"].new_value) == ("", "(set)")
    assert [(c.field, c.old_value, c.new_value) for c in entries[1].changes] == [
        ("password", "(set)", "(changed)")]
    assert [(c.field, c.old_value, c.new_value) for c in entries[2].changes] == [
        ("username", "1001", "1002")]


def test_request_id_makes_a_retry_change_nothing(app: TrunkplaneApp) -> None:
    meta = CommandMeta(actor="alice", idempotency_key="k1", fingerprint="f1")
    first = create(app, meta=meta)
    again = create(app, meta=meta)
    assert again.id == first.id
    assert len(events_of(app, first.id)) == 1
    with pytest.raises(PreconditionError, match="already used for a different request"):
        create(app, {**VOCO, "name": "other"},
               meta=CommandMeta(actor="alice", idempotency_key="k1", fingerprint="f2"))


def test_batch_commits_together_and_a_failing_command_leaves_no_trace(
    app: TrunkplaneApp,
) -> None:
    create(app)
    results = app.execute_batch([
        lambda uow: commands.update_trunk(uow, "default", "voco", {"host": "a.example.com"},
                                          "", ALICE),
        lambda uow: commands.update_trunk(uow, "default", "voco",
                                          {"host": "b.example.com", "codecs": []}, "", ALICE),
        lambda uow: commands.update_trunk(uow, "default", "voco", {"dtmf_mode": "info"},
                                          "", ALICE),
    ])
    assert [type(r.error).__name__ for r in results] == ["NoneType", "ValidationError",
                                                          "NoneType"]
    assert len({r.position for r in results if r.error is None}) == 1
    trunk = app.aggregate(UUID(str(results[0].unwrap().aggregate.id)))
    assert isinstance(trunk, Trunk)
    assert (trunk.settings["host"], trunk.settings["dtmf_mode"]) == ("a.example.com", "info")
    assert trunk.version == 3


def test_a_command_that_crashes_fails_alone(app: TrunkplaneApp) -> None:
    create(app)

    def broken(uow: Any) -> commands.Outcome:
        raise KeyError("a bug")

    results = app.execute_batch([
        lambda uow: commands.update_trunk(uow, "default", "voco", {"host": "a.example.com"},
                                          "", ALICE),
        broken,
        lambda uow: commands.update_trunk(uow, "default", "voco", {"dtmf_mode": "info"},
                                          "", ALICE),
    ])
    assert isinstance(results[1].error, KeyError)
    assert results[0].error is None and results[2].error is None
    assert results[2].unwrap().aggregate.version == 3
