"""The token check remembers what it found for a presented token (issue 16), and forgets it
as soon as the tokens file changes: a revocation counts on the next call."""

from __future__ import annotations

import json
import threading
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


def test_an_expiry_without_a_zone_is_utc(tmp_path: Path) -> None:
    """A hand-edited expiry without a zone is read as UTC, not as the server's local time."""
    store = TokenStore(tmp_path / "tokens.json")
    _, clear = store.create("pbx-1", "pbx", days=1)
    path = tmp_path / "tokens.json"
    document = json.loads(path.read_text())
    past = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
    document["tokens"][0]["expires"] = past.isoformat()
    path.write_text(json.dumps(document) + "\n")
    assert store.identify(clear) is None
    assert not store.records()[0].usable(datetime.now(UTC))


def test_one_change_of_the_file_at_a_time(tmp_path: Path) -> None:
    """A revoke waits for a change in progress elsewhere (another `tokens create`), so it
    reads what that one wrote and the revocation is never written over."""
    store = TokenStore(tmp_path / "tokens.json")
    token_id, clear = store.create("pbx-1", "pbx")
    other = TokenStore(tmp_path / "tokens.json")  # another process's view of the file
    revoked = threading.Event()

    def revoke() -> None:
        store.revoke(token_id)
        revoked.set()

    with other._changing():  # a create that has read the file and not yet written it
        records = other.records()
        worker = threading.Thread(target=revoke)
        worker.start()
        assert not revoked.wait(0.5)  # the revoke waits for it
        other._write([*records])
    worker.join(timeout=10)
    assert revoked.is_set()
    assert store.records()[0].revoked and store.identify(clear) is None
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
