"""The call record store on real SQLite and PostgreSQL, and the queued sink the agent's
B2BUA hands records to."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.calls import CallAttempt, CallRecord
from domain.errors import ValidationError
from projections.calls import CallQuery, CallStore
from projections.db import Database
from sipagent.call_records import QueuedCallSink

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
VOCO, CARRIER = "7d0c0a3e-0000-4000-8000-000000000001", "7d0c0a3e-0000-4000-8000-000000000002"


def call(n: int, *, tenant: str = "acme", direction: str = "outbound", code: int = 200,
         trunks: Sequence[tuple[str, int]] = ((VOCO, 200),), number: str = "12125550100",
         agent: str = "agent-1") -> CallRecord:
    started = T0 + timedelta(minutes=n)
    attempts = tuple(CallAttempt(t, "voco" if t == VOCO else "carrier", c,
                                 "OK" if c == 200 else "Service Unavailable") for t, c in trunks)
    return CallRecord(
        call_id=f"call-{n}", tenant=tenant, direction=direction,  # type: ignore[arg-type]
        agent_id=agent, attempts=attempts, number_received=f"9{number}",
        number_sent=number, caller_received="1001", caller_sent="15550001001",
        trunk_id=trunks[-1][0] if trunks else "", started_at=started,
        answered_at=started + timedelta(seconds=3) if code == 200 else None,
        ended_at=started + timedelta(seconds=60), final_code=code,
        final_reason="OK" if code == 200 else "Busy Here", hangup_by="pbx")


def ids(records: Sequence[CallRecord]) -> list[str]:
    return [r.call_id for r in records]


def test_a_record_reads_back_whole_and_a_redelivery_changes_nothing(db: Database) -> None:
    store = CallStore(db)
    record = call(1, trunks=((CARRIER, 503), (VOCO, 200)))
    store.record([record])
    store.record([record, record])
    page, token = store.page(CallQuery(tenant="acme"))
    assert page == [record] and token == ""


def test_newest_first_in_pages_that_neither_skip_nor_repeat(db: Database) -> None:
    store = CallStore(db)
    store.record([call(n) for n in range(25)])
    seen: list[str] = []
    token = ""
    while True:
        page, token = store.page(CallQuery(tenant="acme"), page_size=10, page_token=token)
        seen += ids(page)
        if not token:
            break
    assert seen == [f"call-{n}" for n in reversed(range(25))]


def test_filters(db: Database) -> None:
    store = CallStore(db)
    store.record([
        call(1), call(2, code=486), call(3, direction="inbound", number="15551234567"),
        call(4, trunks=((CARRIER, 503), (VOCO, 200))), call(5, trunks=((CARRIER, 200),)),
        call(6, tenant="other"),
    ])

    def find(**filters: object) -> list[str]:
        return ids(store.page(CallQuery(tenant="acme", **filters))[0])  # type: ignore[arg-type]

    assert find() == ["call-5", "call-4", "call-3", "call-2", "call-1"]
    assert find(direction="inbound") == ["call-3"]
    assert find(final_code=486) == ["call-2"]
    assert find(trunk_id=CARRIER) == ["call-5", "call-4"]  # carried, or tried and failed
    assert find(number="15551234567") == ["call-3"]
    assert find(number="915551234567") == ["call-3"]  # as received
    assert find(number="1001", direction="outbound", final_code=200) == [
        "call-5", "call-4", "call-1"]
    berlin = timezone(timedelta(hours=1))
    end = (T0 + timedelta(minutes=4)).astimezone(berlin)
    assert find(start_time=T0 + timedelta(minutes=2), end_time=end) == ["call-3", "call-2"]


@pytest.mark.parametrize(("query", "size", "token", "field"), [
    (CallQuery(direction="sideways"), 0, "", "direction"),
    (CallQuery(final_code=700), 0, "", "final_code"),
    (CallQuery(start_time=T0, end_time=T0), 0, "", "end_time"),
    (CallQuery(), 1001, "", "page_size"),
    (CallQuery(), 0, "garbage!", "page_token"),
])
def test_bad_queries_name_the_field(db: Database, query: CallQuery, size: int, token: str,
                                    field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CallStore(db).page(query, size, token)
    assert [v.field for v in caught.value.violations] == [field]


def test_the_sink_queues_on_the_callers_thread_and_keeps_what_it_could_not_write(
        db: Database) -> None:
    store = CallStore(db)
    failing = True

    def write(records: Sequence[CallRecord]) -> None:
        if failing:
            raise OSError("store away")
        store.record(records)

    sink = QueuedCallSink(write)
    for n in range(1200):
        sink.record(call(n))
    with pytest.raises(OSError, match="store away"):
        sink.flush()
    assert sink.pending == 1200
    failing = False
    assert sink.flush() == 1200 and sink.pending == 0
    assert len(store.page(CallQuery(tenant="acme"), page_size=1000)[0]) == 1000


def test_the_sink_writes_on_its_own_and_the_rest_on_stop(db: Database) -> None:
    store = CallStore(db)
    sink = QueuedCallSink(store.record, every=0.05).start()
    sink.record(call(1))
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while sink.written == 0 and datetime.now(UTC) < deadline:
        time.sleep(0.01)
    sink.record(call(2))
    sink.stop()
    assert ids(store.page(CallQuery(tenant="acme"))[0]) == ["call-2", "call-1"]


def test_records_older_than_the_retention_go(db: Database) -> None:
    store = CallStore(db)
    store.record([call(n) for n in range(5)])
    assert store.prune(T0 + timedelta(minutes=3)) == 3
    assert ids(store.page(CallQuery(tenant="acme"))[0]) == ["call-4", "call-3"]
    assert store.prune(T0) == 0
