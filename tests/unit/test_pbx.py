"""A tenant's PBX access: validation, the events its commands record, how it reads in the
history and the config view, backup restore, and the agent's directory built from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from domain import commands
from domain.application import TrunkplaneApp
from domain.errors import ConflictError, PreconditionError, ValidationError
from domain.feeds import FeedItem
from domain.model import CommandMeta, event_name
from domain.pbx import Pbx, validate_pbx
from domain.sync import DesiredConfig, sync_tenant
from projections.audit import ChangeQuery, ChangeRow, HistoryReader
from projections.config_view import ConfigView
from projections.db import SqliteDatabase
from projections.runner import ProjectionRunner
from projections.views import ConfigProjection, HistoryProjection, ViewStore
from sipagent.state import AgentState

ALICE = CommandMeta(actor="alice", reason="OPS-9", request_id="req-1")
PBX: dict[str, Any] = {
    "source_cidrs": ["192.0.2.10", "198.51.100.0/24"],
    "targets": [{"uri": "sip:pbx.example.com:5080;transport=TCP", "priority": 20},
                {"uri": "SIP:10.1.1.1", "priority": 10, "weight": 5}],
}



def update(app: TrunkplaneApp, patch: dict[str, Any], tenant: str = "acme", etag: str = "",
           meta: CommandMeta = ALICE) -> Pbx:
    done = app.execute(lambda uow: commands.update_pbx(uow, tenant, patch, etag, meta))
    pbx = done.unwrap().aggregate
    assert isinstance(pbx, Pbx)
    return pbx


def violations(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        validate_pbx(raw)
    return {v.field: v.description for v in caught.value.violations}


def test_canonical_form_host_networks_uris_and_the_order_tried() -> None:
    settings = validate_pbx(PBX)
    assert settings["source_cidrs"] == ["192.0.2.10/32", "198.51.100.0/24"]
    assert settings["targets"] == [
        {"uri": "sip:10.1.1.1", "priority": 10, "weight": 5},
        {"uri": "sip:pbx.example.com:5080;transport=TCP", "priority": 20, "weight": 1}]
    assert (settings["username"], settings["password"], settings["enabled"]) == ("", "", True)
    assert validate_pbx({"source_cidrs": ["2001:db8::/32"], "targets": [
        {"uri": "sips:100@[2001:db8::1]:5061"}]})["targets"][0]["priority"] == 10


@pytest.mark.parametrize(("raw", "field", "words"), [
    ({"source_cidrs": ["0.0.0.0/0"]}, "pbx.source_cidrs", "any address"),
    ({"source_cidrs": ["10.0.0.1/8"]}, "pbx.source_cidrs", "did you mean 10.0.0.0/8"),
    ({"source_cidrs": ["10.0.0.0/8", "10.0.0.0/8"]}, "pbx.source_cidrs", "[1] 10.0.0.0/8 is "
                                                                         "listed twice"),
    ({"source_cidrs": ["pbx.example.com"]}, "pbx.source_cidrs", "not a network"),
    ({"source_cidrs": "10.0.0.0/8"}, "pbx.source_cidrs", "must be a list"),
    ({"source_cidrs": ["10.0.0.0/8"], "username": "pbx"}, "pbx.password", "go together"),
    ({"username": "pbx", "password": "long-enough-secret"}, "pbx.source_cidrs",
     "at least one"),
    ({"source_cidrs": ["10.0.0.0/8"], "username": "a b", "password": "x"}, "pbx.username",
     "not allowed"),
    ({"targets": [{"uri": "http://pbx.example.com"}]}, "pbx.targets", "[0] uri"),
    ({"targets": [{"uri": "sip:pbx.example.com;transport=sctp"}]}, "pbx.targets",
     "transport must be one of udp, tcp, tls"),
    ({"targets": [{"uri": "sip:pbx.example.com?subject=x"}]}, "pbx.targets", "not a SIP URI"),
    ({"targets": [{"uri": "sip:bad_host"}]}, "pbx.targets", "not a valid domain"),
    ({"targets": [{"uri": "sip:a.example.com", "priority": 70000}]}, "pbx.targets",
     "priority must be a whole number from 0 to 65535"),
    ({"targets": [{"uri": "sip:a.example.com", "weight": 0}]}, "pbx.targets",
     "weight must be a whole number from 1 to 65535"),
    ({"targets": [{"uri": "sip:a.example.com", "port": 5}]}, "pbx.targets", "unknown keys port"),
    ({"targets": [{"uri": "sip:a.example.com"}, {"uri": "sip:A.example.com"}]}, "pbx.targets",
     "[1] sip:a.example.com is listed twice"),
    ({"targets": [{"uri": f"sip:{i}.example.com"} for i in range(11)]}, "pbx.targets",
     "at most 10"),
    ({"enabled": "yes"}, "pbx.enabled", "true or false"),
])
def test_each_broken_rule_is_named_by_its_field(raw: dict[str, Any], field: str,
                                                words: str) -> None:
    found = violations(raw)
    assert field in found, found
    assert words in found[field]


def test_every_mistake_of_a_request_is_reported_at_once() -> None:
    found = violations({"source_cidrs": ["0.0.0.0/0"], "targets": [{"uri": "tel:+1"}],
                        "username": "pbx"})
    assert set(found) == {"pbx.source_cidrs", "pbx.targets", "pbx.password"}


def test_each_group_of_fields_is_its_own_event_with_actor_and_reason(
        app: TrunkplaneApp) -> None:
    first = update(app, PBX)
    assert first.id == Pbx.id_for("acme") and first.version == 1
    update(app, {"username": "pbx-1", "password": "a-long-digest-secret"})
    update(app, {"source_cidrs": ["192.0.2.10/32"], "enabled": False})
    events: list[Any] = list(app.events.get(first.id))
    assert [event_name(e) for e in events] == [
        "PbxCreated", "PbxCredentialsChanged", "PbxDisabled", "PbxSourcesChanged"]
    assert {(e.actor, e.reason, e.request_id) for e in events} == {("alice", "OPS-9", "req-1")}
    again = update(app, {"source_cidrs": ["192.0.2.10"]})  # the same, written differently
    assert again.version == 4


def test_stale_etag_conflicts_and_a_bad_update_changes_nothing(app: TrunkplaneApp) -> None:
    with pytest.raises(ConflictError, match="not configured yet"):
        update(app, PBX, etag='W/"3"')
    pbx = update(app, PBX, etag='W/"0"')
    update(app, {"targets": []}, etag=pbx.etag)
    with pytest.raises(ConflictError):
        update(app, {"targets": PBX["targets"]}, etag=pbx.etag)
    with pytest.raises(ValidationError):
        update(app, {"targets": [{"uri": "nope"}], "source_cidrs": ["10.0.0.0/8"]})
    current = app.aggregate(Pbx.id_for("acme"))
    assert isinstance(current, Pbx)
    assert (current.version, current.settings["targets"]) == (2, [])


def test_a_retried_request_id_records_nothing_new(app: TrunkplaneApp) -> None:
    meta = CommandMeta(actor="alice", idempotency_key="k1", fingerprint="f1")
    update(app, PBX, meta=meta)
    assert update(app, PBX, meta=meta).version == 1
    with pytest.raises(PreconditionError, match="already used"):
        update(app, {"enabled": False},
               meta=CommandMeta(actor="alice", idempotency_key="k1", fingerprint="f2"))


def views(app: TrunkplaneApp, tmp_path: Path) -> tuple[list[ChangeRow], ConfigView]:
    db = SqliteDatabase(tmp_path / "views.sqlite")
    store = ViewStore(db, [ConfigProjection(lambda s: f"fp-{len(s)}"),
                           HistoryProjection(lambda s: f"fp-{len(s)}")])
    runner = ProjectionRunner(app, store)
    runner.catch_up("history", 1)
    runner.catch_up("config", 1)
    rows = list(HistoryReader(store).all(ChangeQuery(tenant="acme")))
    return rows, ConfigView(store, app.head, lambda position, wait: True)


def test_history_shows_before_and_after_and_the_password_only_as_changed(
        app: TrunkplaneApp, tmp_path: Path) -> None:
    update(app, {**PBX, "username": "pbx-1", "password": "first-digest-secret"})
    update(app, {"password": "second-digest-secret", "source_cidrs": ["192.0.2.10/32"]})
    rows, config = views(app, tmp_path)
    assert "digest-secret" not in repr(rows)
    assert [(r.subject_kind, r.subject_name, r.event_type) for r in rows] == [
        ("pbx", "pbx", "PbxCreated"), ("pbx", "pbx", "PbxCredentialsChanged"),
        ("pbx", "pbx", "PbxSourcesChanged")]
    created = {c.field: (c.old_value, c.new_value) for c in rows[0].changes}
    assert created["password"] == ("", "(set)")
    assert created["source_cidrs"] == ("", "192.0.2.10/32, 198.51.100.0/24")
    assert [(c.field, c.old_value, c.new_value) for c in rows[1].changes] == [
        ("password", "(set)", "(changed)")]
    assert [(c.field, c.old_value, c.new_value) for c in rows[2].changes] == [
        ("source_cidrs", "192.0.2.10/32, 198.51.100.0/24", "192.0.2.10/32")]
    doc = config.pbx("acme")
    assert doc is not None and "digest-secret" not in repr(doc)
    assert doc["settings"]["password"] == "fp-20" and doc["version"] == 3
    assert config.pbx("other") is None


def test_restoring_a_backup_records_only_differences_and_keeps_the_password(
        app: TrunkplaneApp) -> None:
    def restore(pbx: dict[str, Any] | None) -> list[str]:
        done = app.execute(lambda uow: sync_tenant(uow, "acme", DesiredConfig(pbx=pbx), ALICE))
        return done.unwrap().changes

    wanted = {**PBX, "username": "pbx-1", "password": "first-digest-secret"}
    assert restore(wanted) == ["create pbx: password, source_cidrs, targets, username"]
    assert restore(wanted) == []
    exported = {k: v for k, v in validate_pbx(PBX).items() if k != "password"}
    assert restore({**exported, "username": "pbx-1", "enabled": False}) == [
        "update pbx: enabled"]
    pbx = app.aggregate(Pbx.id_for("acme"))
    assert isinstance(pbx, Pbx) and pbx.settings["password"] == "first-digest-secret"
    assert restore(None) == []


class Directory:
    """PBX events of several tenants folded into an agent's state, as a feed delivers."""

    def __init__(self, app: TrunkplaneApp) -> None:
        self.app = app
        self.state = AgentState()
        self.seen = 0

    def sync(self) -> None:
        notes = self.app.recorder.select_notifications(self.seen, 1000,
                                                       inclusive_of_start=False)
        items = []
        for note in notes:
            event = self.app.mapper.to_domain_event(note)
            tenant = getattr(self.app.aggregate(event.originator_id), "tenant", "")
            if isinstance(event, Pbx.Event):
                items.append(FeedItem(note.id, tenant, event, partition=len(tenant) % 2))
        self.seen = notes[-1].id if notes else self.seen
        self.state.apply(items)


def test_the_agent_finds_the_tenant_by_the_most_specific_network(app: TrunkplaneApp) -> None:
    update(app, {"source_cidrs": ["10.0.0.0/8"], "targets": [{"uri": "sip:a.example.com"}]},
           tenant="wide")
    update(app, {"source_cidrs": ["10.1.0.0/16", "2001:db8::/32"],
                 "username": "pbx-1", "password": "narrow-digest-secret"}, tenant="narrow")
    update(app, {"source_cidrs": ["10.1.2.3"]}, tenant="exact")
    directory = Directory(app)
    directory.sync()
    state = directory.state
    tenant = {ip: getattr(state.pbx_for_source(ip), "tenant", None)
              for ip in ("10.9.9.9", "10.1.9.9", "10.1.2.3", "::ffff:10.1.2.3", "2001:db8::5",
                         "11.0.0.1", "not an ip")}
    assert tenant == {"10.9.9.9": "wide", "10.1.9.9": "narrow", "10.1.2.3": "exact",
                      "::ffff:10.1.2.3": "exact", "2001:db8::5": "narrow", "11.0.0.1": None,
                      "not an ip": None}
    assert [a.tenant for a in state.pbx_candidates("10.1.2.3")] == ["exact", "narrow", "wide"]
    narrow = state.pbx("narrow")
    assert narrow is not None and narrow.needs_digest
    assert narrow.password == "narrow-digest-secret"
    wide = state.pbx("wide")
    assert wide is not None and [t.uri for t in wide.targets] == ["sip:a.example.com"]


def test_equal_networks_of_two_tenants_give_the_call_to_nobody(app: TrunkplaneApp) -> None:
    update(app, {"source_cidrs": ["10.0.0.0/8"]}, tenant="one")
    update(app, {"source_cidrs": ["10.0.0.0/8"]}, tenant="two")
    directory = Directory(app)
    directory.sync()
    assert directory.state.pbx_for_source("10.2.3.4") is None
    assert [a.tenant for a in directory.state.pbx_candidates("10.2.3.4")] == ["one", "two"]


def test_disabled_or_forgotten_pbxes_take_no_calls(app: TrunkplaneApp) -> None:
    update(app, {"source_cidrs": ["10.0.0.0/8"]}, tenant="ab")
    update(app, {"source_cidrs": ["10.1.0.0/16"]}, tenant="abc")
    directory = Directory(app)
    directory.sync()
    update(app, {"enabled": False}, tenant="abc")
    directory.sync()
    state = directory.state
    assert getattr(state.pbx_for_source("10.1.1.1"), "tenant", None) == "ab"
    assert state.pbx("abc") is None
    assert state.forget_partitions([0]) == ["ab"]  # "ab" rode on partition 0
    assert state.pbx_for_source("10.1.1.1") is None and state.pbx("ab") is None
    update(app, {"enabled": True}, tenant="abc")
    directory.sync()
    assert getattr(state.pbx_for_source("10.1.1.1"), "tenant", None) == "abc"
