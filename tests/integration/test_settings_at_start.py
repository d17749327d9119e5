"""Every setting is checked at start: a mistake is one line naming the variable and the
documented exit code, never a traceback; secrets may come from files (*_FILE)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from infra.cli.exits import Exit
from tests.integration.test_cli import CLI, Server, free_port

KEY = "x8IuD0sEXGOXjG8ygnTpGaYgk9ip3kmMOW71V7tKmXQ="


@pytest.mark.parametrize(("name", "value"), [
    ("TRUNKPLANE_LOG_LEVEL", "verbose"),
    ("TRUNKPLANE_LISTEN", "everywhere"),
    ("TRUNKPLANE_METRICS_LISTEN", "9464"),
    ("TRUNKPLANE_WEB_LISTEN", "localhost"),
    ("TRUNKPLANE_RATE_LIMIT", "fast"),
    ("TRUNKPLANE_LOG_FORMAT", "xml"),
    ("TRUNKPLANE_CIPHER_KEY_FILE", "/nonexistent/cipher.key"),
    ("TRUNKPLANE_DATABASE_URL", "mysql://db"),
])
def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path, name: str, value: str) -> None:
    env = {**os.environ, "TRUNKPLANE_DATA": str(tmp_path / "var"), name: value,
           "TRUNKPLANE_LISTEN": f"127.0.0.1:{free_port()}", "TRUNKPLANE_METRICS_LISTEN": "off",
           "TRUNKPLANE_WEB_LISTEN": "off"}
    env[name] = value
    if name != "TRUNKPLANE_DATABASE_URL":
        env.pop("TRUNKPLANE_DATABASE_URL", None)
    done = subprocess.run([*CLI, "serve"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == Exit.SETTINGS, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and name.removesuffix("_FILE") in lines[0], lines
    assert "Traceback" not in done.stderr


def test_both_a_secret_and_its_file_is_a_mistake(tmp_path: Path) -> None:
    key_file = tmp_path / "cipher.key"
    key_file.write_text(KEY + "\n")
    env = {**os.environ, "TRUNKPLANE_DATA": str(tmp_path / "var"),
           "TRUNKPLANE_CIPHER_KEY": KEY, "TRUNKPLANE_CIPHER_KEY_FILE": str(key_file)}
    done = subprocess.run([*CLI, "serve"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == Exit.SETTINGS
    assert "TRUNKPLANE_CIPHER_KEY and TRUNKPLANE_CIPHER_KEY_FILE are both set" in done.stderr


def test_the_cipher_key_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "cipher.key"
    key_file.write_text(KEY + "\n")
    server = Server(tmp_path, TRUNKPLANE_CIPHER_KEY_FILE=str(key_file))
    server.start()
    try:
        created = server.cli("trunk", "create", "t", "--type", "peer", "--peer", "192.0.2.1")
        assert created.returncode == 0, created.stderr
    finally:
        server.stop()
    assert not (tmp_path / "var" / "cipher.key").exists()  # the file's key, not a new one
    restarted = Server(tmp_path, TRUNKPLANE_CIPHER_KEY=KEY)  # the same key, given inline
    restarted.token = server.token
    restarted.start()
    try:
        assert restarted.cli("trunk", "get", "t").returncode == 0
    finally:
        restarted.stop()
