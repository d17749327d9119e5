"""The token check remembers what it found for a presented token (issue 16), and forgets it
as soon as the tokens file changes: a revocation counts on the next call."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from infra.security.tokens import TokenStore


def test_a_remembered_token_is_refused_once_revoked(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token_id, clear = store.create("pbx-1", "pbx")
    first = store.identify(clear)
    assert first is not None and first.principal == "pbx-1"
    assert store.identify(clear) is first  # remembered
    assert store.identify(clear + "x") is None
    assert store.revoke(token_id)
    assert store.identify(clear) is None  # the very next call


def test_a_remembered_token_is_refused_once_expired(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    _, clear = store.create("pbx-1", "pbx", days=1)
    assert store.identify(clear) is not None
    path = tmp_path / "tokens.json"
    document = json.loads(path.read_text())
    document["tokens"][0]["expires"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    path.write_text(json.dumps(document) + "\n")  # one byte more: seen as a change
    assert store.identify(clear) is None


def test_a_remembered_token_expires_without_a_change_of_the_file(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    _, clear = store.create("pbx-1", "pbx", days=1)
    record = store.identify(clear)
    assert record is not None
    store._known[clear] = (record, 0.0)  # as if its expiry had passed since it was read
    assert store.identify(clear) is None
