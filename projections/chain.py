"""A hash chain over the event log, as stored: each link covers the previous link and the
stored event (position, aggregate, version, topic, and the encrypted state). The history
projection keeps the chain as events arrive; `verify` recomputes it from the store and
names the first event that was edited, removed or inserted since."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.application import TrunkplaneApp

if TYPE_CHECKING:
    from projections.views import ViewStore

GENESIS = "0" * 64
LAYOUT = struct.Struct(">QQI")
PAGE = 1000


def link(previous: str, position: int, stored: Any) -> str:
    """SHA-256 of: previous link, position, aggregate id (16 bytes), version, the topic and
    the stored state, each of the last two preceded by its length."""
    topic = stored.topic.encode()
    state = bytes(stored.state)
    return hashlib.sha256(b"".join((
        bytes.fromhex(previous), LAYOUT.pack(position, stored.originator_version, len(topic)),
        _uuid(stored.originator_id).bytes, topic, len(state).to_bytes(4, "big"), state,
    ))).hexdigest()


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


@dataclass(frozen=True)
class ChainReport:
    intact: bool
    checked: int          # events compared
    head_position: int    # the last position the chain covers
    head: str             # its link
    problem: str = ""     # the first difference, in words
    position: int = 0     # where it is


def verify(app: TrunkplaneApp, store: ViewStore) -> ChainReport:
    """Walks the recorded chain and the stored log side by side."""
    table = store.projections["history"].table_names(store.live("history"))[2]
    chain = _chain(store, table)
    previous, checked, at = GENESIS, 0, 0
    stored_events = iter(_stored(app, chain[-1][0] if chain else 0))
    pending = next(stored_events, None)
    for position, recorded in chain:
        if pending is not None and pending[0] < position:
            return ChainReport(False, checked, position, recorded,
                               f"event at position {pending[0]} was inserted after the chain "
                               "was recorded", pending[0])
        if pending is None or pending[0] > position:
            return ChainReport(False, checked, position, recorded,
                               f"event at position {position} was removed", position)
        expected = link(previous, position, pending[1])
        if expected != recorded:
            stored = pending[1]
            return ChainReport(False, checked, position, recorded,
                               f"event at position {position} ({stored.originator_id} "
                               f"version {stored.originator_version}) differs from the one "
                               "recorded", position)
        previous, checked, at = recorded, checked + 1, position
        pending = next(stored_events, None)
    return ChainReport(True, checked, at, previous)


def _chain(store: ViewStore, table: str) -> list[tuple[int, str]]:
    with store.db.transaction() as cur:
        cur.execute(f"SELECT position, hash FROM {table} ORDER BY position")  # noqa: S608
        return [(int(row[0]), str(row[1])) for row in cur.fetchall()]


def _stored(app: TrunkplaneApp, until: int) -> Any:
    position = 0
    while position < until:
        page = app.recorder.select_notifications(position, PAGE, stop=until,
                                                 inclusive_of_start=False)
        if not page:
            return
        for notification in page:
            yield notification.id, notification
        position = page[-1].id


def head(store: ViewStore) -> tuple[int, str]:
    table = store.projections["history"].table_names(store.live("history"))[2]
    with store.db.transaction() as cur:
        cur.execute(f"SELECT position, hash FROM {table} ORDER BY position DESC LIMIT 1")  # noqa: S608
        row = cur.fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))
