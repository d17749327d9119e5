"""Importing a configuration with a request id: every change applied once, a retry of the
whole import changes nothing, and the id cannot be reused for another document."""

from __future__ import annotations

import pytest

from domain.application import TrunkplaneApp
from domain.errors import PreconditionError
from domain.model import CommandMeta
from domain.sync import DesiredConfig, SyncReport, sync_tenant

META = CommandMeta(actor="admin", request_id="imp-1", idempotency_key="imp-1",
                   fingerprint="doc-a")


def desired(*names: str) -> DesiredConfig:
    trunks = [{"name": n, "type": "peer", "peer_addresses": ["192.0.2.1"], "codecs": ["PCMU"]}
              for n in names]
    routes = [{"name": "US", "dial_patterns": [{"match": "NXXNXXXXXX"}],
               "trunks": [{"trunk_id": n, "weight": 1} for n in names]}]
    inbound = [{"did_pattern": "15551234567", "destination": "ivr:main"}]
    return DesiredConfig(trunks, routes, inbound)



def run(app: TrunkplaneApp, config: DesiredConfig, meta: CommandMeta = META) -> SyncReport:
    return app.execute(lambda uow: sync_tenant(uow, "acme", config, meta)).unwrap()


def test_every_change_is_applied_once_and_a_retry_changes_nothing(app: TrunkplaneApp) -> None:
    first = run(app, desired("voco", "spare", "third"))
    assert len(first.changes) == 5 and not first.replayed and first.new_history
    head = app.head()
    catalog = app.catalog("acme")
    assert catalog is not None
    assert sorted(e["name"] for e in catalog.entries["trunk"].values()) == [
        "spare", "third", "voco"]
    assert len(catalog.entries["outbound"]) == len(catalog.entries["inbound"]) == 1
    again = run(app, desired("voco", "spare", "third"))
    assert again.replayed and again.changes == [] and app.head() == head


def test_a_second_run_without_request_id_changes_nothing(app: TrunkplaneApp) -> None:
    run(app, desired("voco", "spare"))
    head = app.head()
    report = run(app, desired("voco", "spare"), CommandMeta(actor="admin"))
    assert report.changes == [] and app.head() == head and not report.new_history


def test_the_request_id_cannot_cover_another_document(app: TrunkplaneApp) -> None:
    run(app, desired("voco"))
    other = CommandMeta(actor="admin", request_id="imp-1", idempotency_key="imp-1",
                        fingerprint="doc-b")
    with pytest.raises(PreconditionError, match="already used"):
        run(app, desired("voco", "other"), other)
