"""Audit exports that verify offline. Every row carries its log position, its leaf index
and leaf hash (recomputed from the stored event at export time) and the inclusion path to
the signed head that closes the export; the last line(s) hold that head, the public key
and a signature over everything before them (who exported, when, with which filter, and
the rows). JSON lines end with one trailer line; CSV with TRAILER_ROWS `meta` rows."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.text import csv_cell
from infra.ledger.merkle import MemoryTree, inclusion_path, verify_inclusion
from infra.ledger.signing import HeadSigner, SignedHead, key_id

FORMAT = "trunkplane-audit-export/2"
EXPORT_CONTEXT = b"trunkplane export v1\x00"
CSV_COLUMNS = ("record", "position", "time", "tenant", "subject_kind", "subject_id",
               "subject_name", "version", "actor", "reason", "request_id", "event_type",
               "field", "old_value", "new_value", "leaf_index", "leaf_hash", "inclusion_path")
TRAILER_KEYS = ("head_size", "head_timestamp_ms", "head_root", "head_key_id",
                "head_signature", "head_position", "public_key", "export_signature")
TRAILER_ROWS = len(TRAILER_KEYS)


@dataclass(frozen=True)
class RowProof:
    leaf_index: int
    leaf_hash: bytes
    path: list[bytes]

    def as_json(self) -> dict[str, Any]:
        return {"leaf_index": self.leaf_index, "leaf_hash": self.leaf_hash.hex(),
                "inclusion_path": [p.hex() for p in self.path]}


MISSING = RowProof(-1, b"", [])


def row_proof(tree: MemoryTree, size: int, index: int | None, leaf: bytes | None) -> RowProof:
    """The row's proof: `leaf` is the hash of the event stored now at the row's position
    (None: no event there any more), `index` its leaf in the tree (None: not in it)."""
    if index is None or leaf is None or index >= size:
        return RowProof(-1 if index is None else index, leaf or b"", [])
    return RowProof(index, leaf, inclusion_path(index, size, tree.perfect))


def sign_export(signer: HeadSigner, body_digest: bytes) -> bytes:
    return signer.private.sign(EXPORT_CONTEXT + body_digest)


def trailer(head: SignedHead, head_position: int, signer: HeadSigner,
            body_digest: bytes) -> dict[str, str]:
    return {"head_size": str(head.size), "head_timestamp_ms": str(head.timestamp_ms),
            "head_root": head.root.hex(), "head_key_id": head.key_id,
            "head_signature": head.signature.hex(), "head_position": str(head_position),
            "public_key": signer.public_base64(),
            "export_signature": sign_export(signer, body_digest).hex()}


def jsonl_trailer(values: dict[str, str]) -> str:
    return json.dumps({"trailer": values}, sort_keys=True) + "\n"


def csv_lines(rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow(list(row))
    return buffer.getvalue()


def csv_meta(key: str, value: str) -> list[str]:
    cells = ["meta"] + [""] * (len(CSV_COLUMNS) - 1)
    cells[CSV_COLUMNS.index("field")] = key
    cells[CSV_COLUMNS.index("new_value")] = value
    return cells


@dataclass
class Verdict:
    rows: int = 0
    head: SignedHead | None = None
    header: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_export(data: bytes, pinned_key: str = "") -> Verdict:
    """Checks an export without the service: the key, the head's and the export's
    signatures, and every row's inclusion in the signed head. Lines are split on bytes:
    JSON escapes line breaks, and the CSV trailer holds none."""
    jsonl = data.lstrip().startswith(b"{")
    lines = data.splitlines(keepends=True)
    cut = len(lines) - (1 if jsonl else TRAILER_ROWS)
    verdict = Verdict()
    if cut < 1:
        verdict.problems.append("the export is empty or lacks its trailer")
        return verdict
    raw_body = b"".join(lines[:cut])
    body, tail = raw_body.decode(), b"".join(lines[cut:]).decode()
    try:
        values = _trailer(tail, jsonl)
        rows, verdict.header = (_jsonl_rows(body) if jsonl else _csv_rows(body))
    except (ValueError, KeyError, IndexError) as error:
        verdict.problems.append(f"the export is malformed: {error}")
        return verdict
    public = _key(values, pinned_key, verdict)
    if public is None:
        return verdict
    head = SignedHead(int(values["head_size"]), int(values["head_timestamp_ms"]),
                      bytes.fromhex(values["head_root"]), values["head_key_id"],
                      bytes.fromhex(values["head_signature"]))
    verdict.head = head
    if not head.verify(public):
        verdict.problems.append("the signed head does not verify with the public key")
    try:
        public.verify(bytes.fromhex(values["export_signature"]),
                      EXPORT_CONTEXT + hashlib.sha256(raw_body).digest())
    except InvalidSignature:
        verdict.problems.append("the export was changed after it was signed (header or rows)")
    for position, proof in rows:
        verdict.rows += 1
        if not verify_inclusion(proof.leaf_hash, proof.leaf_index, head.size, proof.path,
                                head.root):
            verdict.problems.append(f"position {position}: not in the signed log as exported "
                                    "(edited, forged, removed or inserted)")
    return verdict


def _key(values: dict[str, str], pinned: str, verdict: Verdict) -> Ed25519PublicKey | None:
    text = pinned or values["public_key"]
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(text))
    except ValueError as error:
        verdict.problems.append(f"the public key is not an Ed25519 key: {error}")
        return None
    if pinned and pinned != values["public_key"]:
        verdict.problems.append("the export names another public key than the one given")
    if key_id(public) != values["head_key_id"]:
        verdict.problems.append("the head was signed by another key than the one given")
    return public


def _trailer(tail: str, jsonl: bool) -> dict[str, str]:
    if jsonl:
        return {k: str(v) for k, v in json.loads(tail)["trailer"].items()}
    cells = list(csv.reader(io.StringIO(tail)))
    found = {c[CSV_COLUMNS.index("field")]: c[CSV_COLUMNS.index("new_value")] for c in cells}
    return {key: found[key] for key in TRAILER_KEYS}


def _jsonl_rows(body: str) -> tuple[list[tuple[int, RowProof]], dict[str, str]]:
    lines = body.splitlines()
    header = json.loads(lines[0])["export"]
    rows = []
    for line in lines[1:]:
        doc = json.loads(line)
        rows.append((int(doc["position"]), _proof(doc)))
    return rows, {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in header.items()}


def _csv_rows(body: str) -> tuple[list[tuple[int, RowProof]], dict[str, str]]:
    header: dict[str, str] = {}
    rows: dict[int, RowProof] = {}
    for cells in csv.DictReader(io.StringIO(body)):
        if cells["record"] == "meta":
            header[cells["field"]] = cells["new_value"]
        elif cells["record"] == "change":
            path = cells["inclusion_path"].split()
            rows[int(cells["position"])] = _proof({**cells, "inclusion_path": path})
    return sorted(rows.items()), header


def _proof(doc: dict[str, Any]) -> RowProof:
    return RowProof(int(doc["leaf_index"]), bytes.fromhex(doc["leaf_hash"]),
                    [bytes.fromhex(p) for p in doc["inclusion_path"]])


class ExportWriter:
    """Writes an export as it streams: a header, rows with their proofs, the trailer
    signed over every byte before it."""

    def __init__(self, fmt: str, header: dict[str, str], signer: HeadSigner) -> None:
        self.fmt = fmt
        self.header = header
        self.signer = signer
        self.digest = hashlib.sha256()

    def _out(self, text: str) -> bytes:
        data = text.encode()
        self.digest.update(data)
        return data

    def start(self) -> bytes:
        if self.fmt == "jsonl":
            return self._out(json.dumps({"export": self.header}, sort_keys=True) + "\n")
        return self._out(csv_lines([CSV_COLUMNS, *(csv_meta(k, v)
                                                   for k, v in self.header.items())]))

    def row(self, row: Any, proof: RowProof) -> bytes:
        """`row` is a projections.audit.ChangeRow."""
        base = {"position": row.position, "time": row.time.isoformat(), "tenant": row.tenant,
                "subject_kind": row.subject_kind, "subject_id": row.subject_id,
                "subject_name": row.subject_name, "version": row.version, "actor": row.actor,
                "reason": row.reason, "request_id": row.request_id,
                "event_type": row.event_type}
        if self.fmt == "jsonl":
            doc = {**base, "changes": [{"field": c.field, "old": c.old_value,
                                        "new": c.new_value} for c in row.changes],
                   **proof.as_json()}
            return self._out(json.dumps(doc, ensure_ascii=False) + "\n")
        # Text a spreadsheet would run as a formula (=, +, -, @ first) is neutralised.
        cells = [tuple(csv_cell(str(v)) for v in (c.field, c.old_value, c.new_value))
                 for c in row.changes] or [("", "", "")]
        fixed = ["change", *(csv_cell(v) if isinstance(v, str) else v for v in base.values())]
        tail = [proof.leaf_index, proof.leaf_hash.hex(), " ".join(p.hex() for p in proof.path)]
        return self._out(csv_lines([*fixed, *change, *tail] for change in cells))

    def finish(self, head: SignedHead, head_position: int) -> bytes:
        values = trailer(head, head_position, self.signer, self.digest.digest())
        if self.fmt == "jsonl":
            return jsonl_trailer(values).encode()
        return csv_lines(csv_meta(key, values[key]) for key in TRAILER_KEYS).encode()
