"""AuditService and OpsService against a real server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from infra.ledger.export import verify_export
from tests.conftest import Api
from tests.integration.helpers import PASSWORD, create_route, create_trunk, update_trunk
from trunkplane.v1 import audit_pb2, audit_pb2_grpc, ops_pb2, ops_pb2_grpc, trunk_pb2


def audit(api: Api) -> Any:
    return audit_pb2_grpc.AuditServiceStub(api.channel)


def ops(api: Api) -> Any:
    return ops_pb2_grpc.OpsServiceStub(api.channel)


def changes(api: Api, **filters: Any) -> list[Any]:
    found, token = [], ""
    while True:
        page = audit(api).ListChanges(audit_pb2.ListChangesRequest(
            filter=audit_pb2.ChangeFilter(**filters), page_size=2, page_token=token))
        found += list(page.changes)
        token = page.next_page_token
        if not token:
            return found


def scenario(api: Api) -> dict[str, Any]:
    """Create, change and delete a trunk; a route; a second actor."""
    created = create_trunk(api, "voco", reason="onboarding")
    time.sleep(0.01)
    middle = datetime.now(UTC)
    changed = update_trunk(api, "voco", trunk_pb2.Trunk(host="sip2.example.com"), ["host"])
    update_trunk(api, "voco", trunk_pb2.Trunk(password="Another-Long-Password-7"),
                 ["password"])
    create_trunk(api, "spare")
    create_route(api, "US", ["spare"])
    bob = api.as_("bob", "operator")
    deleted = api.trunks.DeleteTrunk(trunk_pb2.DeleteTrunkRequest(trunk="voco"), metadata=bob)
    return {"id": created.trunk.id, "middle": middle, "changed": changed,
            "deleted": deleted}


def test_changes_are_filtered_paged_and_never_show_secrets(api: Api) -> None:
    facts = scenario(api)
    every = changes(api)
    assert [c.entry.event_type for c in every] == [
        "TrunkCreated", "ServerChanged", "CredentialsChanged", "TrunkCreated",
        "OutboundRoutesReordered", "OutboundRouteCreated", "TrunkDeleted"]
    assert every == sorted(every, key=lambda c: c.position)
    assert PASSWORD not in str(every) and "Another-Long" not in str(every)
    voco = changes(api, subject=facts["id"])
    assert [c.entry.version for c in voco] == [1, 2, 3, 4]
    assert voco[1].entry.changes[0].new_value == "sip2.example.com"
    assert [(c.field, c.old_value, c.new_value) for c in voco[2].entry.changes] == [
        ("password", "(set)", "(changed)")]
    assert [c.entry.event_type for c in changes(api, actor="bob")] == ["TrunkDeleted"]
    assert len(changes(api, event_type="TrunkCreated")) == 2
    stamp = audit_pb2.ChangeFilter().start_time
    stamp.FromDatetime(facts["middle"])
    later = changes(api, subject=facts["id"], start_time=stamp)
    assert [c.entry.event_type for c in later] == ["ServerChanged", "CredentialsChanged",
                                                   "TrunkDeleted"]
    assert changes(api, subject="spare")[0].subject_name == "spare"
    with pytest.raises(grpc.RpcError) as caught:
        audit(api).ListChanges(audit_pb2.ListChangesRequest(page_token="nonsense"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_export_as_csv_and_json_lines(api: Api) -> None:
    scenario(api)
    raw = b"".join(chunk.data for chunk in audit(api).ExportChanges(
        audit_pb2.ExportChangesRequest(format="csv")))
    records = list(csv.DictReader(io.StringIO(raw.decode())))
    meta = {r["field"]: r["new_value"] for r in records if r["record"] == "meta"}
    assert meta["exported_by"] == "tester" and meta["filter.tenant"] == "(all)"
    assert int(meta["head_size"]) == api.plane.app.head()
    rows = [r for r in records if r["record"] == "change"]
    assert len({r["position"] for r in rows}) == 7
    server = next(r for r in rows if r["event_type"] == "ServerChanged")
    assert (server["field"], server["old_value"], server["new_value"]) == (
        "host", "sip.example.com", "sip2.example.com")  # one column per old and new value
    assert verify_export(raw).ok
    assert PASSWORD.encode() not in raw
    lines = b"".join(chunk.data for chunk in audit(api).ExportChanges(
        audit_pb2.ExportChangesRequest(format="jsonl", filter=audit_pb2.ChangeFilter(
            actor="bob")))).decode().splitlines()
    assert [json.loads(line).get("event_type") for line in lines[1:-1]] == ["TrunkDeleted"]
    assert json.loads(lines[0])["export"]["filter.actor"] == "bob"
    assert int(json.loads(lines[-1])["trailer"]["head_size"]) == api.plane.app.head()
    with pytest.raises(grpc.RpcError) as caught:
        list(audit(api).ExportChanges(audit_pb2.ExportChangesRequest(format="xml")))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_trunk_at_each_point_of_its_life(api: Api) -> None:
    facts = scenario(api)
    at = audit_pb2.PointInTime
    steps = [audit(api).GetTrunkAt(audit_pb2.GetTrunkAtRequest(trunk=facts["id"],
                                                               at=at(version=v)))
             for v in (1, 2, 3, 4)]
    assert [(s.trunk.version, s.trunk.host, s.trunk.password_set, s.deleted) for s in steps] == [
        (1, "sip.example.com", True, False), (2, "sip2.example.com", True, False),
        (3, "sip2.example.com", True, False), (4, "sip2.example.com", True, True)]
    assert [s.trunk.etag for s in steps] == ['W/"1"', 'W/"2"', 'W/"3"', 'W/"4"']
    first = audit(api).GetTrunkAt(audit_pb2.GetTrunkAtRequest(trunk=facts["id"],
                                                              at=at(version=1)))
    assert (first.trunk.host, first.trunk.version, first.deleted) == ("sip.example.com", 1,
                                                                      False)
    assert first.trunk.password == ""
    point = at()
    point.time.FromDatetime(facts["middle"])
    assert audit(api).GetTrunkAt(audit_pb2.GetTrunkAtRequest(
        trunk=facts["id"], at=point)).trunk.version == 1
    last = audit(api).GetTrunkAt(audit_pb2.GetTrunkAtRequest(trunk=facts["id"],
                                                             at=at(version=4)))
    assert last.deleted and last.trunk.host == "sip2.example.com"
    request = audit_pb2.DiffTrunkRequest(trunk=facts["id"], to=at(version=3))
    getattr(request, "from").CopyFrom(at(version=1))
    diff = audit(api).DiffTrunk(request)
    assert [(c.field, c.old_value, c.new_value) for c in diff.changes] == [
        ("host", "sip.example.com", "sip2.example.com"), ("password", "(set)", "(changed)")]
    for bad, code in ((at(version=9), grpc.StatusCode.NOT_FOUND),
                      (at(), grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.RpcError) as caught:
            audit(api).GetTrunkAt(audit_pb2.GetTrunkAtRequest(trunk=facts["id"], at=bad))
        assert caught.value.code() == code


def test_status_rebuild_and_verify(api: Api) -> None:
    scenario(api)
    head = api.plane.app.head()
    assert api.plane.runner.wait_for(head, 10)
    status = ops(api).GetProjectionStatus(ops_pb2.GetProjectionStatusRequest())
    assert {(p.name, p.position, p.head, p.lag_events) for p in status.projections} == {
        ("config", head, head, 0), ("history", head, head, 0)}
    api.plane.runner.stop()  # the views fall behind while commands go on
    update_trunk(api, "spare", trunk_pb2.Trunk(description="one"), ["description"])
    time.sleep(1.1)
    update_trunk(api, "spare", trunk_pb2.Trunk(description="two"), ["description"])
    behind = ops(api).GetProjectionStatus(ops_pb2.GetProjectionStatusRequest())
    for view in behind.projections:
        assert view.lag_events == 2 and view.lag_seconds >= 1.0, view
    api.plane.runner.start()
    head = api.plane.app.head()
    assert api.plane.runner.wait_for(head, 10)
    before = changes(api)
    progress = list(ops(api).RebuildProjection(ops_pb2.RebuildProjectionRequest(
        name="history")))
    assert progress[-1].done and progress[-1].generation == 2
    assert progress[0].head == head and progress[0].events_per_second > 0
    after = changes(api)  # the rebuild is itself on record, by whom and of which view
    assert after[:-1] == before and after[-1].entry.event_type == "ViewsRebuilt"
    assert after[-1].entry.actor == "tester"
    for name in ("config", "history"):
        verdict = ops(api).VerifyProjection(ops_pb2.VerifyProjectionRequest(name=name))
        assert verdict.equal, verdict.differences
        assert verdict.position == api.plane.app.head() == head + 1
    with pytest.raises(grpc.RpcError) as caught:
        ops(api).VerifyProjection(ops_pb2.VerifyProjectionRequest(name="nope"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_verify_finds_a_view_edited_behind_its_back(api: Api) -> None:
    scenario(api)
    assert api.plane.runner.wait_for(api.plane.app.head(), 10)
    with api.plane.views.transaction() as cur:
        cur.execute("UPDATE tp_history_g1 SET actor = 'mallory' WHERE event_type = "
                    "'ServerChanged'")
        assert cur.rowcount == 1
    verdict = ops(api).VerifyProjection(ops_pb2.VerifyProjectionRequest(name="history"))
    assert not verdict.equal
    assert any("mallory" in d for d in verdict.differences)
