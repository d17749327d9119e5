"""The hash chain: an event edited, removed or inserted in the store behind the service's
back is named by `VerifyChain`, in SQLite and in PostgreSQL."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import pytest

from tests.conftest import Api
from tests.integration.helpers import create_route, create_trunk, update_trunk
from trunkplane.v1 import audit_pb2, audit_pb2_grpc, trunk_pb2


def populate(api: Api) -> None:
    create_trunk(api, "voco")
    create_trunk(api, "spare")
    update_trunk(api, "voco", trunk_pb2.Trunk(host="sip2.example.com"), ["host"])
    create_route(api, "US", ["voco"])


def verify(api: Api) -> Any:
    return audit_pb2_grpc.AuditServiceStub(api.channel).VerifyChain(
        audit_pb2.VerifyChainRequest())


def sql(api: Api, sqlite_sql: str, postgres_sql: str, *params: Any) -> list[Any]:
    """Runs a statement on the event store directly, as someone with database access."""
    if api.settings.database_url:
        with psycopg.connect(api.settings.database_url, autocommit=True) as connection:
            cursor = connection.execute(postgres_sql, params)
            return cursor.fetchall() if cursor.description else []
    with sqlite3.connect(api.settings.data_dir / "events.sqlite") as connection:
        return connection.execute(sqlite_sql, params).fetchall()


def edit(api: Api, position: int) -> None:
    """Flips one bit of the stored (encrypted) state of the event at a position."""
    state = bytes(sql(api, "SELECT state FROM stored_events WHERE rowid = ?",
                      "SELECT state FROM trunkplane_events WHERE notification_id = %s",
                      position)[0][0])
    changed = state[:-1] + bytes([state[-1] ^ 1])
    sql(api, "UPDATE stored_events SET state = ? WHERE rowid = ?",
        "UPDATE trunkplane_events SET state = %s WHERE notification_id = %s", changed, position)


def test_an_untouched_log_verifies(api: Api) -> None:
    populate(api)
    report = verify(api)
    assert report.intact and report.problem == ""
    assert report.checked == report.head_position == api.plane.app.head()
    assert len(report.head) == 64


@pytest.mark.parametrize("position", [1, 5])
def test_an_edited_event_is_named(api: Api, position: int) -> None:
    populate(api)
    head = verify(api)
    edit(api, position)
    report = verify(api)
    assert not report.intact
    assert report.position == position
    assert f"event at position {position}" in report.problem and "differs" in report.problem
    assert report.checked == position - 1 and head.intact


def test_a_removed_event_is_named(api: Api) -> None:
    populate(api)
    sql(api, "DELETE FROM stored_events WHERE rowid = ?",
        "DELETE FROM trunkplane_events WHERE notification_id = %s", 3)
    report = verify(api)
    assert (report.intact, report.position) == (False, 3)
    assert report.problem == "event at position 3 was removed"
