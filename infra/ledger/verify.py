"""Checks the stored log against the proof written with it, and the proof against the
signed heads. Every disagreement is a finding that names the event (position, aggregate,
version) and what happened to it: edited, forged, replaced, removed, truncated, inserted,
undecryptable; or the proof itself rewritten (roots or signatures that do not hold)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from infra.ledger.merkle import EMPTY_ROOT, Frontier, leaf_hash
from infra.ledger.proofs import Ledger
from infra.ledger.signing import SignedHead
from infra.ledger.tables import LEAVES, event_data

PAGE = 2000
MAX_FINDINGS = 1000
Decode = Callable[[Any], str]  # "" when the stored event decodes, else why not


@dataclass(frozen=True)
class Finding:
    kind: str
    position: int
    subject_id: str
    version: int
    detail: str


@dataclass
class Report:
    checked: int = 0
    size: int = 0
    root: bytes = EMPTY_ROOT
    head_position: int = 0
    signed: SignedHead | None = None  # the newest signed head that holds
    findings: list[Finding] = field(default_factory=list)
    omitted: int = 0

    @property
    def intact(self) -> bool:
        return not self.findings

    def add(self, finding: Finding) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(finding)
        else:
            self.omitted += 1


@dataclass(frozen=True)
class Leaf:
    idx: int
    position: int
    subject_id: str
    version: int
    leaf: bytes
    root: bytes


def verify(ledger: Ledger, log: Any, decode: Decode | None,
           keys: Sequence[Ed25519PublicKey]) -> Report:
    """Walks the log (`log.select_notifications`) and the proof side by side."""
    report = Report()
    walker = _Walker(report, decode)
    # The proof as it stands now bounds the walk: events and their leaves are written in
    # one transaction, but this walk reads them page by page while the service writes on,
    # so an event found past the bound is judged by the proof read again at the end.
    size = ledger.size()
    late: list[Any] = []
    events, leaves = _events(log), _leaves(ledger, size)
    event, leaf = next(events, None), next(leaves, None)
    while event is not None or leaf is not None:
        if leaf is None and event is not None:
            walker.later(event)
            late.append(event)
            event = next(events, None)
        elif leaf is None or (event is not None and event.id < leaf.position):
            walker.inserted(event)
            event = next(events, None)
        elif event is None or leaf.position < event.id:
            walker.removed(leaf)
            leaf = next(leaves, None)
        else:
            walker.compare(event, leaf)
            event, leaf = next(events, None), next(leaves, None)
    recorded = ledger.recorded_positions([e.id for e in late], size)
    for event in late:  # written after the bound: its leaf must be a later one, and its own
        actual = leaf_hash(event_data(event.id, event.originator_id,
                                      event.originator_version, event.topic, event.state))
        if recorded.get(event.id) != actual:
            walker.inserted(event)
    walker.finish()
    _check_heads(ledger, report, walker.roots, keys, size)
    return report


class _Walker:
    def __init__(self, report: Report, decode: Decode | None) -> None:
        self.report = report
        self.decode = decode
        self.frontier = Frontier()
        self.roots: dict[int, bytes] = {}
        self.proof_broken = False
        self.trailing: list[Leaf] = []  # removed leaves with no stored event after them

    def compare(self, event: Any, leaf: Leaf) -> None:
        self._flush_removed()
        self._extend(leaf)
        actual = leaf_hash(event_data(event.id, event.originator_id, event.originator_version,
                                      event.topic, event.state))
        problem = self.decode(event) if self.decode else ""
        if actual == leaf.leaf:
            if problem:
                self._add("undecryptable", leaf, f"cannot be read: {problem}")
            else:
                self.report.checked += 1
            return
        if (str(event.originator_id), event.originator_version) != (leaf.subject_id,
                                                                    leaf.version):
            self._add("replaced", leaf, f"another event now stands there "
                      f"({event.originator_id} version {event.originator_version})")
        elif problem:
            self._add("edited", leaf, "its stored bytes were changed and no longer decrypt")
        else:
            self._add("forged", leaf, "it was re-encrypted with a valid key: its content "
                      "differs from what was recorded")

    def removed(self, leaf: Leaf) -> None:
        self._extend(leaf)
        self.trailing.append(leaf)

    def later(self, event: Any) -> None:
        """An event past the proof's size when the walk began: leaves before it that have no
        event of their own were removed from the middle of the log, not its end."""
        self._flush_removed()

    def inserted(self, event: Any) -> None:
        self._flush_removed()
        self.report.add(Finding(
            "inserted", event.id, str(event.originator_id), event.originator_version,
            "stored behind the service's back: the proof holds no event at this position"))

    def finish(self) -> None:
        for leaf in self.trailing:
            self._add("truncated", leaf, "missing from the end of the log (the log was "
                      "truncated after the event the proof last records)")
        self.trailing = []
        self.report.size = self.frontier.size
        self.report.root = self.frontier.root()

    def _flush_removed(self) -> None:
        for leaf in self.trailing:
            self._add("removed", leaf, "removed from the log")
        self.trailing = []

    def _extend(self, leaf: Leaf) -> None:
        """Recomputes the tree from the recorded leaves: a root that differs means the
        proof itself was rewritten after the fact."""
        self.frontier.append(leaf.leaf)
        root = self.frontier.root()
        self.roots[self.frontier.size] = root
        self.report.head_position = leaf.position
        if root != leaf.root and not self.proof_broken:
            self.proof_broken = True
            self._add("proof", leaf, "the proof's recorded tree head differs from the one "
                      "its leaves give: the proof tables were rewritten")

    def _add(self, kind: str, leaf: Leaf, detail: str) -> None:
        self.report.add(Finding(kind, leaf.position, leaf.subject_id, leaf.version, detail))


def _check_heads(ledger: Ledger, report: Report, roots: dict[int, bytes],
                 keys: Sequence[Ed25519PublicKey], size: int) -> None:
    """Every kept signed head must carry a valid signature and the root the tree gives at
    its size; a head beyond the tree means the proof lost its tail (unless the tree grew
    to it while the walk ran)."""
    after = 0
    while True:
        heads = ledger.heads(after)
        if not heads:
            return
        for head in heads:
            if head.size > size and ledger.size() >= head.size:
                continue  # signed after the walk's bound: the next verification checks it
            problem = _head_problem(head, roots, keys)
            if problem:
                report.add(Finding("signed_head", 0, "", head.size, problem))
            elif report.signed is None or head.size >= report.signed.size:
                report.signed = head
        after = heads[-1].size


def _head_problem(head: SignedHead, roots: dict[int, bytes],
                  keys: Sequence[Ed25519PublicKey]) -> str:
    if keys and not any(head.verify(key) for key in keys):
        return (f"the signed head of size {head.size} does not verify with the public "
                f"key (key id {head.key_id}): forged or signed by another key")
    if head.size not in roots:
        return (f"a signed head covers {head.size} events but the proof holds "
                f"{max(roots, default=0)}: the proof was truncated")
    if roots[head.size] != head.root:
        return (f"the signed head of size {head.size} has root {head.root.hex()[:16]}..., "
                f"the proof gives {roots[head.size].hex()[:16]}...: the proof was rewritten")
    return ""


def _events(log: Any) -> Iterator[Any]:
    position = 0
    while True:
        page = log.select_notifications(position, PAGE, inclusive_of_start=False)
        if not page:
            return
        yield from page
        position = page[-1].id


def _leaves(ledger: Ledger, size: int) -> Iterator[Leaf]:
    idx = 0
    while True:
        rows = ledger.recorder.query(
            f"SELECT idx, position, originator_id, originator_version, leaf, root FROM {LEAVES} "
            "WHERE idx >= ? AND idx < ? ORDER BY idx LIMIT ?", (idx, size, PAGE))
        if not rows:
            return
        for row in rows:
            yield Leaf(int(row[0]), int(row[1]), str(row[2]), int(row[3]), bytes(row[4]),
                       bytes(row[5]))
        idx = int(rows[-1][0]) + 1
