"""The stored log edited behind a running service's back (a flipped byte, a removed row, a
forged re-encrypted event, a truncated tail), on SQLite and PostgreSQL: `VerifyLog` names
the event by trunk name and position; a rebuild refuses and leaves the proof as it was; a
head saved before the edit no longer goes with the log; an export taken before the edit
still verifies offline and one taken after does not. Also through the CLI, as an auditor
would run it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from infra.ledger.export import verify_export
from infra.ledger.merkle import verify_consistency
from tests.conftest import Api
from tests.integration.helpers import create_route, create_trunk, update_trunk
from tests.integration.test_cli import Server
from tests.integration.test_cli import server as server
from tests.integration.test_ledger import Store
from trunkplane.v1 import audit_pb2, audit_pb2_grpc, ops_pb2, ops_pb2_grpc, trunk_pb2


def audit(api: Api) -> audit_pb2_grpc.AuditServiceStub:
    return audit_pb2_grpc.AuditServiceStub(api.channel)


def populate(api: Api) -> dict[str, int]:
    """The trunks and where their events are in the log."""
    create_trunk(api, "voco")
    create_trunk(api, "spare")
    update_trunk(api, "voco", trunk_pb2.Trunk(host="sip2.example.com"), ["host"])
    create_route(api, "US", ["voco"])
    create_trunk(api, "last")
    rows = audit(api).ListChanges(audit_pb2.ListChangesRequest()).changes
    return {f"{c.subject_name}:{c.entry.event_type}": c.position for c in rows}


class Behind:
    """SQL on the store as someone with database access, and the cipher key."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.store = Store.__new__(Store)
        self.store.settings = api.settings
        self.store.app = api.plane.app

    def flip(self, position: int) -> None:
        state = bytes(self.store.sql("SELECT state FROM {table} WHERE {key} = ?",
                                     position)[0][0])
        self.store.sql("UPDATE {table} SET state = ? WHERE {key} = ?",
                       state[:-1] + bytes([state[-1] ^ 1]), position)

    def forge(self, position: int) -> None:
        app = self.api.plane.app
        event = app.mapper.to_domain_event(app.recorder.select_notifications(position, 1)[0])
        forged: Any = dataclasses.replace(event, actor="mallory")  # type: ignore[type-var]
        self.store.sql("UPDATE {table} SET state = ? WHERE {key} = ?",
                       app.mapper.to_stored_event(forged).state, position)

    def remove(self, position: int) -> None:
        self.store.sql("DELETE FROM {table} WHERE {key} = ?", position)

    def truncate(self, after: int) -> None:
        self.store.sql("DELETE FROM {table} WHERE {key} > ?", after)

    def proof(self) -> dict[str, list[Any]]:
        return {table: [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                        for row in self.store.sql(f"SELECT * FROM {table} ORDER BY 1, 2")]  # noqa: S608
                for table in ("tp_ledger_leaves", "tp_ledger_nodes", "tp_ledger_heads")}


def export(api: Api) -> bytes:
    return b"".join(c.data for c in audit(api).ExportChanges(
        audit_pb2.ExportChangesRequest(format="jsonl")))


EDITS: dict[str, tuple[str, Callable[[Behind, dict[str, int]], int]]] = {
    "flipped byte": ("edited", lambda b, p: _do(b.flip, p["voco:ServerChanged"])),
    "forged event": ("forged", lambda b, p: _do(b.forge, p["voco:ServerChanged"])),
    "removed row": ("removed", lambda b, p: _do(b.remove, p["voco:ServerChanged"])),
    "truncated tail": ("truncated", lambda b, p: _do(b.truncate, p["last:TrunkCreated"] - 1,
                                                     p["last:TrunkCreated"])),
}


def _do(action: Callable[[int], None], position: int, named: int = 0) -> int:
    action(position)
    return named or position


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edit_behind_the_back_is_named_and_cannot_be_laundered(api: Api, edit: str) -> None:
    positions = populate(api)
    assert audit(api).VerifyLog(audit_pb2.VerifyLogRequest()).intact
    saved = audit(api).GetSignedHead(audit_pb2.GetSignedHeadRequest())
    before = export(api)
    behind = Behind(api)
    proof = behind.proof()
    kind, change = EDITS[edit]
    position = change(behind, positions)
    name = "last" if edit == "truncated tail" else "voco"

    report = audit(api).VerifyLog(audit_pb2.VerifyLogRequest())
    assert not report.intact
    found = [f for f in report.findings if f.position == position]
    assert found and found[0].kind == kind, report.findings
    assert (found[0].subject_kind, found[0].subject_name, found[0].tenant) == (
        "trunk", name, "default")

    with pytest.raises(grpc.RpcError) as refused:
        list(ops_pb2_grpc.OpsServiceStub(api.channel).RebuildProjection(
            ops_pb2.RebuildProjectionRequest(name="history")))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"position {position}: trunk '{name}'" in str(refused.value.details())
    kept = behind.proof()  # unchanged, but for the refusal's own event where it could append
    for table, rows in proof.items():
        assert set(rows) <= set(kept[table])
    leaves = kept["tp_ledger_leaves"]
    assert leaves[:len(proof["tp_ledger_leaves"])] == proof["tp_ledger_leaves"]
    assert len(leaves) - len(proof["tp_ledger_leaves"]) <= 1
    assert audit(api).VerifyLog(audit_pb2.VerifyLogRequest()).findings[0].position == position

    assert verify_export(before).ok  # taken before: still verifies offline
    after = verify_export(export(api))
    assert not after.ok and any(p.startswith(f"position {position}:")
                                for p in after.problems), after.problems
    # The proof still extends the saved head (it was not touched), but the log does not
    # match it any more: `audit consistency` checks both (see the CLI test below).
    proof_now = audit(api).GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(
        first_size=saved.tree_size))
    assert verify_consistency(saved.tree_size, proof_now.second.tree_size, saved.root_hash,
                              proof_now.second.root_hash, list(proof_now.path))


def test_proofs_on_demand(api: Api) -> None:
    populate(api)
    early = audit(api).GetSignedHead(audit_pb2.GetSignedHeadRequest(position=3))
    assert early.tree_size == 3 and early.position == 3 and early.public_key
    included = audit(api).GetInclusionProof(audit_pb2.GetInclusionProofRequest(position=2))
    assert included.leaf_index == 1 and included.head.tree_size == api.plane.app.head()
    with pytest.raises(grpc.RpcError) as caught:
        audit(api).GetSignedHead(audit_pb2.GetSignedHeadRequest(tree_size=10_000))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_auditor_at_the_command_line(server: Server, tmp_path: Path) -> None:
    for name in ("voco", "spare"):
        created = server.cli("trunk", "create", name, "--type", "peer", "--peer",
                             "192.0.2.1", "--codecs", "PCMU")
        assert created.returncode == 0, created.stderr
    head = server.cli("--json", "audit", "head")
    assert head.returncode == 0, head.stderr + head.stdout
    saved = tmp_path / "head.json"
    saved.write_text(head.stdout)
    exported = tmp_path / "before.jsonl"
    assert server.cli("audit", "export", "--format", "jsonl", "--output",
                      str(exported)).returncode == 0
    server.cli("trunk", "update", "voco", "--dtmf", "info")
    assert server.cli("audit", "consistency", str(saved)).returncode == 0
    assert server.cli("audit", "verify").returncode == 0

    import sqlite3
    with sqlite3.connect(server.data / "var" / "events.sqlite") as connection:
        connection.execute("DELETE FROM stored_events WHERE rowid = 1")
    verify = server.cli("audit", "verify")
    assert verify.returncode == 4 and "removed" in verify.stdout, verify.stdout
    consistency = server.cli("audit", "consistency", str(saved))
    assert consistency.returncode == 4 and "no longer matches" in consistency.stdout
    rebuild = server.cli("projections", "rebuild", "--all")
    assert rebuild.returncode != 0 and "refusing to rebuild" in rebuild.stderr + rebuild.stdout
    offline = server.cli("audit", "verify-export", str(exported),
                         "--public-key", json.loads(head.stdout)["public_key"])
    assert offline.returncode == 0 and "OK: " in offline.stdout
