"""What the servicers and the CLI ask of the proof: verification with findings named the
way auditors name things (tenant, trunk or route, position), proofs, and the guard that
keeps a rebuild from turning an edited log into the views."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.catalog import TenantCatalog
from domain.errors import PreconditionError
from infra.ledger import decoder
from infra.ledger.proofs import Inclusion, Ledger, ProofError, RowProofs
from infra.ledger.signing import HeadSigner, SignedHead
from infra.ledger.verify import Finding, Report, verify

# (position, subject id) -> (tenant, kind, name), or None when the history has no row
SubjectAt = Callable[[int, str], tuple[str, str, str] | None]


@dataclass(frozen=True)
class NamedFinding:
    finding: Finding
    tenant: str
    kind: str
    name: str

    def describe(self) -> str:
        f = self.finding
        if f.kind == "signed_head":
            return f"signed head of size {f.version}: {f.detail}"
        subject = f"{self.kind} '{self.name}'" if self.name else self.kind
        where = f" of tenant {self.tenant}" if self.tenant else ""
        return (f"position {f.position}: {subject}{where} (version {f.version}) "
                f"{f.kind}: {f.detail}")


class LedgerService:
    def __init__(self, app: Any, signer: HeadSigner | None,
                 keys: Sequence[Ed25519PublicKey] = ()) -> None:
        self.app = app
        self.signer = signer
        self.keys = list(keys) or ([signer.public] if signer else [])
        self.ledger = Ledger(app.recorder, signer)

    def verify(self) -> Report:
        return verify(self.ledger, self.app.recorder, decoder(self.app), self.keys)

    def name(self, report: Report, subject_at: SubjectAt,
             tenants: Sequence[str]) -> list[NamedFinding]:
        catalogs = {str(TenantCatalog.id_for(t)): t for t in tenants}
        return [_named(f, subject_at, catalogs) for f in report.findings]

    def guard_rebuild(self, subject_at: SubjectAt, tenants: Sequence[str]) -> None:
        """Refuses (FAILED_PRECONDITION) while the log and the proof disagree, naming
        where: a rebuild would carry the edit into the views."""
        report = self.verify()
        if report.intact:
            return
        named = self.name(report, subject_at, tenants)
        shown = "; ".join(n.describe() for n in named[:5])
        more = len(named) - 5 + report.omitted
        raise PreconditionError(
            f"refusing to rebuild: the stored log and its proof disagree at "
            f"{len(named) + report.omitted} place(s): {shown}"
            + (f"; and {more} more" if more > 0 else "")
            + "; see `trunkplane audit verify`; restore the log from a backup first")

    def head(self, size: int = 0, position: int = 0) -> tuple[SignedHead, int]:
        """The signed head of a size, or of the tree once `position` was written, or now;
        with the log position of its last event."""
        if size <= 0:
            size = self.ledger.size_at_position(position) if position > 0 else \
                self.ledger.size()
        if size > self.ledger.size():
            raise ProofError("tree_size", f"the tree holds {self.ledger.size()} events, "
                             f"not {size}")
        return self.ledger.signed_head(size, now_ms()), self.ledger.position_of(size)

    def consistency(self, first: int, second: int) -> tuple[bytes, list[bytes], SignedHead,
                                                             int]:
        second = second or self.ledger.size()
        path = self.ledger.consistency(first, second)
        head, position = self.head(second)
        return self.ledger.root(first), path, head, position

    def inclusion(self, position: int, size: int) -> tuple[Inclusion, SignedHead, int]:
        proof = self.ledger.inclusion(position, size)
        head, head_position = self.head(proof.size)
        return proof, head, head_position

    def row_proofs(self, size: int) -> RowProofs:
        return RowProofs(self.ledger, self.app.recorder, size)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _named(finding: Finding, subject_at: SubjectAt,
           catalogs: dict[str, str]) -> NamedFinding:
    if finding.kind == "signed_head":
        return NamedFinding(finding, "", "signed head", "")
    found = subject_at(finding.position, finding.subject_id)
    if found is not None:
        return NamedFinding(finding, *found)
    if finding.subject_id in catalogs:
        return NamedFinding(finding, catalogs[finding.subject_id], "catalog",
                            catalogs[finding.subject_id])
    return NamedFinding(finding, "", _kind_hint(finding.subject_id), finding.subject_id)


def _kind_hint(subject_id: str) -> str:
    """Events with no history row: receipts of idempotent requests, or aggregates the
    history does not show."""
    return "request receipt or aggregate" if subject_id else "event"

