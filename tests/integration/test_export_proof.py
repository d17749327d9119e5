"""Exports that verify offline, on SQLite and PostgreSQL: taken before an edit of the
stored log they still verify (with the library and with the README's script); taken after
it they do not, naming the position; a changed header or row breaks the signature."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infra.ledger.export import ExportWriter, verify_export
from infra.ledger.proofs import RowProofs
from projections.audit import ChangeRow
from projections.history import FieldChange
from tests.integration.test_ledger import Store, flip, forge, populate
from tests.integration.test_ledger import store as store

README = Path(__file__).resolve().parents[2] / "README.md"


def export(store: Store, fmt: str, until: int = 0) -> bytes:
    """What the audit servicer writes: every event as a row (a stand-in for the history
    view's rows), proofs against the head covering `until` (0: the whole log)."""
    size = store.ledger.size_at_position(until) if until else store.ledger.size()
    head = store.ledger.signed_head(size, 1)
    proofs = RowProofs(store.ledger, store.app.recorder, size)
    positions = list(range(1, (until or store.app.head()) + 1))
    writer = ExportWriter(fmt, {"exported_by": "auditor@example.com", "exported_at":
                                datetime.now(UTC).isoformat(), "filter": "tenant=acme"},
                          store.signer)
    out = [writer.start()]
    found = proofs.for_positions(positions)
    for position in positions:
        row = ChangeRow(position, "acme", "trunk", "id", "voco", 1, datetime.now(UTC),
                        "alice", "why, with a comma", "", "TrunkCreated",
                        [FieldChange("host", "a", "b"), FieldChange("codecs", "", "PCMU, PCMA")])
        out.append(writer.row(row, found[position]))
    out.append(writer.finish(head, store.ledger.position_of(size)))
    return b"".join(out)


def readme_script(tmp_path: Path) -> Path:
    code = re.search(r"```python\n(# verify_export\.py.*?)```", README.read_text(), re.S)
    assert code is not None
    script = tmp_path / "verify_export.py"
    script.write_text(code.group(1))
    return script


def run_script(script: Path, export_file: Path, *key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script), str(export_file), *key],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_before_the_edit_verifies_one_after_does_not(
        store: Store, fmt: str, tmp_path: Path) -> None:
    populate(store)
    before = export(store, fmt)
    assert verify_export(before).ok
    flip(store, 3)
    forge(store, 5, "mallory")
    assert verify_export(before).ok, "an export is self-contained"
    after = verify_export(export(store, fmt))
    assert [p.split(":")[0] for p in after.problems] == ["position 3", "position 5"]


def test_the_readme_script_checks_an_export(store: Store, tmp_path: Path) -> None:
    populate(store)
    script = readme_script(tmp_path)
    good = tmp_path / "before.jsonl"
    good.write_bytes(export(store, "jsonl"))
    result = run_script(script, good, store.signer.public_base64())
    assert result.returncode == 0, result.stderr
    assert f"OK: {store.app.head()} rows" in result.stdout
    assert "auditor@example.com" in result.stdout
    store.sql("DELETE FROM {table} WHERE {key} = ?", 2)
    bad = tmp_path / "after.jsonl"
    bad.write_bytes(export(store, "jsonl"))
    result = run_script(script, bad)
    assert result.returncode == 1 and "positions [2]" in result.stderr
    assert not verify_export(bad.read_bytes()).ok


def test_a_changed_header_or_row_or_another_key_is_caught(store: Store,
                                                          tmp_path: Path) -> None:
    populate(store)
    data = export(store, "jsonl")
    assert not verify_export(data.replace(b"auditor@example.com", b"someone@example.com")).ok
    assert not verify_export(data.replace(b'"alice"', b'"mallory"', 1)).ok
    other = "MCowBQYDK2VwAyEA"  # not even a key
    assert not verify_export(data, pinned_key=other).ok
    script = readme_script(tmp_path)
    changed = tmp_path / "changed.jsonl"
    changed.write_bytes(data.replace(b'"alice"', b'"mallory"', 1))
    assert run_script(script, changed).returncode == 1


def test_until_closes_the_export_with_the_head_of_its_range(store: Store) -> None:
    populate(store)
    until = 4
    verdict = verify_export(export(store, "jsonl", until=until))
    assert verdict.ok and verdict.head is not None
    assert verdict.head.size == store.ledger.size_at_position(until) == 4
    assert verdict.head.size < store.ledger.size()
