"""Nothing lost on restore: a tenant with every kind of setting is exported, restored into
an empty data directory, and exported again; the two documents are the same."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import Server

PASSPHRASE = "a restore passphrase\n"
SETUP: list[tuple[str, ...]] = [
    ("trunk", "create", "voco", "--template", "thevoco", "--username", "1001", "--password",
     "Long-Enough-Password-1", "--auth-id", "auth-1001", "--from-user", "main",
     "--from-domain", "example.com", "--codecs", "OPUS,ulaw", "--dtmf", "info",
     "--max-calls", "10", "--max-inbound", "6", "--max-outbound", "4",
     "--description", "the main line\nsecond line"),
    ("trunk", "create", "carrier", "--type", "peer", "--peer", "192.0.2.10",
     "--peer", "192.0.2.11:5080", "--transport", "tcp", "--nat", "on", "--external-ip",
     "203.0.113.7", "--local-network", "10.0.0.0/8", "--local-network", "192.168.0.0/16",
     "--enabled", "off"),
    ("trunk", "create", "acct", "--type", "account", "--host", "sip.example.net:5070",
     "--transport", "tls", "--username", "a", "--auth-id", "a-auth", "--password",
     "Another-Long-Password-2", "--max-registrations", "3", "--nat", "on", "--stun",
     "stun.example.net"),
    ("route", "outbound", "create", "US", "--pattern", "1+9|NXXNXXXXXX", "--pattern",
     "011|.", "--trunk", "voco:3", "--trunk", "acct:1", "--strategy", "weighted",
     "--allow", "1XXX", "--allow", "2XXX", "--max-per-minute", "30", "--allow-prefix", "+1",
     "--block-prefix", "1900", "--daily-cap", "500", "--description", "north america"),
    ("route", "outbound", "create", "intl", "--pattern", "00|.", "--trunk", "voco",
     "--enabled", "off"),
    ("route", "inbound", "create", "--did", "15551234567", "--cid", "1212NXXXXXX",
     "--trunk", "voco", "--destination", "ivr:main", "--description", "sales"),
    ("route", "inbound", "create", "--destination", "hangup"),
    ("route", "policy", "--max-per-minute", "60", "--block-prefix", "+882",
     "--block-prefix", "+881", "--allow-prefix", "+49", "--daily-cap", "2000",
     "--hours", "08:00-18:00", "--days", "mon,tue,wed,thu,fri", "--timezone",
     "Europe/Berlin"),
    ("pbx", "set", "--source", "192.0.2.10", "--source", "198.51.100.0/24", "--target",
     "sip:pbx.example.com:5080,1,10", "--target", "sip:backup.example.com,2,1",
     "--username", "pbx-user", "--password", "A-Pbx-Password-That-Is-Long"),
]


def _export(server: Server, path: Path, *extra: str) -> dict[str, object]:
    done = server.cli("config", "export", "--output", str(path), *extra, stdin=PASSPHRASE)
    assert done.returncode == 0, done.stderr
    document: dict[str, object] = json.loads(path.read_text())
    return document


def test_every_setting_survives_export_and_restore(tmp_path: Path) -> None:
    source = Server(tmp_path / "source")
    (tmp_path / "source").mkdir()
    source.start()
    try:
        for args in SETUP:
            done = source.cli(*args)
            assert done.returncode == 0, (args, done.stderr)
        before = _export(source, tmp_path / "before.json")
        sealed = tmp_path / "sealed.json"
        _export(source, sealed, "--with-secrets", "--passphrase-stdin")
    finally:
        source.stop()
    tenant = before["tenants"]["default"]  # type: ignore[index]
    assert tenant["policy"]["business_hours"]["timezone"] == "Europe/Berlin"
    assert tenant["policy"]["guard"]["block_prefixes"] == ["+882", "+881"]
    assert tenant["pbx"]["targets"] and "password" not in tenant["pbx"]

    (tmp_path / "empty").mkdir()
    empty = Server(tmp_path / "empty")
    empty.start()
    try:
        restored = empty.cli("config", "import", str(sealed), "--passphrase-stdin",
                             stdin=PASSPHRASE)
        assert restored.returncode == 0, restored.stderr
        assert "update policy" in restored.stdout
        after = _export(empty, tmp_path / "after.json")
        assert after == before
        again = empty.cli("config", "import", str(sealed), "--passphrase-stdin",
                          stdin=PASSPHRASE)
        assert "changed: 0 (already in step)" in again.stdout, again.stdout
        status = json.loads(empty.cli("--json", "trunk", "get", "acct").stdout)
        assert status["password_set"] is True  # the sealed password came back too
        pbx = json.loads(empty.cli("--json", "pbx", "show").stdout)
        assert pbx["password_set"] is True and pbx["username"] == "pbx-user"
    finally:
        empty.stop()
