"""Reading the proof: tree heads at any size, inclusion and consistency proofs, the
signed heads kept so far. Hashes come from the stored tree (never from the log), so a
proof shows what was recorded when the events were written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from domain.errors import FieldViolation, ValidationError
from infra.ledger.export import RowProof, row_proof
from infra.ledger.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    Perfect,
    consistency_path,
    inclusion_path,
    leaf_hash,
)
from infra.ledger.signing import HeadSigner, SignedHead
from infra.ledger.tables import HEADS, LEAVES, NODES, event_data

PAGE = 5000


class Queryable(Protocol):
    def query(self, statement: str, params: Any = ...) -> list[tuple[Any, ...]]: ...


class ProofError(ValidationError):
    """A proof was asked for something the tree does not hold (field, rule)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__([FieldViolation(field, message)])
        self.field = field


@dataclass(frozen=True)
class Inclusion:
    position: int
    index: int
    size: int
    leaf: bytes
    path: list[bytes]
    root: bytes


class Ledger:
    def __init__(self, recorder: Queryable, signer: HeadSigner | None = None) -> None:
        self.recorder = recorder
        self.signer = signer

    def size(self) -> int:
        rows = self.recorder.query(f"SELECT MAX(idx) FROM {LEAVES}")
        return 0 if not rows or rows[0][0] is None else int(rows[0][0]) + 1

    def size_at_position(self, position: int) -> int:
        """The tree size once the event at `position` (or the last before it) was written."""
        rows = self.recorder.query(f"SELECT MAX(idx) FROM {LEAVES} WHERE position <= ?",
                                   (position,))
        return 0 if not rows or rows[0][0] is None else int(rows[0][0]) + 1

    def recorded_positions(self, positions: Sequence[int], size: int) -> dict[int, bytes]:
        """The leaves the proof holds for these log positions at or past `size` (a leaf
        slipped in below the tree, outside it, proves nothing)."""
        found: dict[int, bytes] = {}
        for start in range(0, len(positions), PAGE):
            chunk = list(positions[start:start + PAGE])
            marks = ", ".join("?" * len(chunk))
            rows = self.recorder.query(
                f"SELECT position, leaf FROM {LEAVES} WHERE idx >= ? AND position IN "
                f"({marks})", (size, *chunk))
            found.update((int(row[0]), bytes(row[1])) for row in rows)
        return found

    def root(self, size: int) -> bytes:
        if size == 0:
            return EMPTY_ROOT
        rows = self.recorder.query(f"SELECT root FROM {LEAVES} WHERE idx = ?", (size - 1,))
        if not rows:
            raise ProofError("size", f"the tree has no head of size {size} (it holds "
                             f"{self.size()} events)")
        return bytes(rows[0][0])

    def position_of(self, size: int) -> int:
        """The log position of the last event a tree of `size` covers."""
        if size == 0:
            return 0
        rows = self.recorder.query(f"SELECT position FROM {LEAVES} WHERE idx = ?", (size - 1,))
        return int(rows[0][0]) if rows else 0

    def signed_head(self, size: int, now_ms: int) -> SignedHead:
        """The head kept for `size` when one was signed then, else a head signed now."""
        kept = self.recorder.query(
            f"SELECT size, timestamp_ms, root, key_id, signature FROM {HEADS} "
            "WHERE size = ? ORDER BY timestamp_ms LIMIT 1", (size,))
        if kept:
            return _head(kept[0])
        if self.signer is None:
            raise ProofError("size", "this process has no signing key")
        return self.signer.head(size, self.root(size), now_ms)

    def heads(self, after_size: int = 0, limit: int = PAGE) -> list[SignedHead]:
        rows = self.recorder.query(
            f"SELECT size, timestamp_ms, root, key_id, signature FROM {HEADS} WHERE size > ? "
            "ORDER BY size, timestamp_ms LIMIT ?", (after_size, limit))
        return [_head(row) for row in rows]

    def inclusion(self, position: int, size: int) -> Inclusion:
        rows = self.recorder.query(f"SELECT idx, leaf FROM {LEAVES} WHERE position = ?",
                                   (position,))
        if not rows:
            raise ProofError("position", f"no event at position {position} in the proof")
        index, leaf = int(rows[0][0]), bytes(rows[0][1])
        size = size or self.size()
        if index >= size:
            raise ProofError("size", f"the event at position {position} is leaf {index}, "
                             f"outside a tree of size {size}")
        return Inclusion(position, index, size, leaf,
                         inclusion_path(index, size, self._perfect()), self.root(size))

    def consistency(self, first: int, second: int) -> list[bytes]:
        if not 0 < first <= second <= self.size():
            raise ProofError("first_size", f"need 0 < first ({first}) <= second ({second}) "
                             f"<= the tree size ({self.size()})")
        return consistency_path(first, second, self._perfect())

    def leaves(self, size: int) -> list[tuple[int, bytes]]:
        """(position, leaf) of the first `size` leaves."""
        found: list[tuple[int, bytes]] = []
        while len(found) < size:
            rows = self.recorder.query(
                f"SELECT position, leaf FROM {LEAVES} WHERE idx >= ? AND idx < ? ORDER BY idx",
                (len(found), min(size, len(found) + PAGE)))
            if not rows:
                break
            found += [(int(r[0]), bytes(r[1])) for r in rows]
        return found

    def memory_tree(self, size: int) -> MemoryTree:
        return MemoryTree([leaf for _, leaf in self.leaves(size)])

    def _perfect(self) -> Perfect:
        @lru_cache(maxsize=256)
        def perfect(level: int, index: int) -> bytes:
            if level == 0:
                rows = self.recorder.query(f"SELECT leaf FROM {LEAVES} WHERE idx = ?", (index,))
            else:
                rows = self.recorder.query(
                    f"SELECT hash FROM {NODES} WHERE level = ? AND idx = ?", (level, index))
            if not rows:
                raise ProofError("size", f"the proof lacks subtree ({level}, {index})")
            return bytes(rows[0][0])

        return perfect


def _head(row: tuple[Any, ...]) -> SignedHead:
    return SignedHead(int(row[0]), int(row[1]), bytes(row[2]), str(row[3]), bytes(row[4]))


class RowProofs:
    """Proofs for export rows against a tree of `size` leaves. Each row's leaf hash is
    recomputed from the event stored at its position now, so an export taken after the
    log was edited does not verify."""

    def __init__(self, ledger: Ledger, log: Any, size: int) -> None:
        self.ledger = ledger
        self.log = log
        self.size = size
        self.tree = ledger.memory_tree(size)

    def for_positions(self, positions: list[int]) -> dict[int, RowProof]:
        if not positions:
            return {}
        marks = ", ".join("?" * len(positions))
        rows = self.ledger.recorder.query(
            f"SELECT position, idx FROM {LEAVES} WHERE position IN ({marks})", positions)
        indexes = {int(p): int(i) for p, i in rows}
        stored = {n.id: n for n in self._stored(min(positions), max(positions))}
        proofs = {}
        for position in positions:
            event = stored.get(position)
            leaf = None if event is None else leaf_hash(event_data(
                event.id, event.originator_id, event.originator_version, event.topic,
                event.state))
            proofs[position] = row_proof(self.tree, self.size, indexes.get(position), leaf)
        return proofs

    def _stored(self, first: int, last: int) -> list[Any]:
        found: list[Any] = []
        start = first
        while start <= last:
            page = self.log.select_notifications(start, PAGE, stop=last)
            if not page:
                break
            found += page
            start = page[-1].id + 1
        return found
