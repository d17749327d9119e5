"""The key ring cipher: compatible with the library's AES-GCM before any rotation, and
every event readable after any number of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.cryptography import AESCipher
from eventsourcing.utils import Environment

from infra.config.settings import Settings, SettingsError
from infra.security.keys import MAGIC, KeyRingCipher, cipher_key, rotate, secret_fingerprint


def cipher(ring: str) -> KeyRingCipher:
    return KeyRingCipher(Environment("test", {"CIPHER_KEY": ring}))


def settings(tmp_path: Path, key: str = "") -> Settings:
    return Settings(data_dir=tmp_path, database_url="", cipher_key=key, listen="",
                    log_level="")


def test_before_any_rotation_it_is_the_library_cipher(tmp_path: Path) -> None:
    ring = cipher_key(settings(tmp_path))
    ours, library = cipher(ring), AESCipher(Environment("t", {"CIPHER_KEY": ring[3:]}))
    assert library.decrypt(ours.encrypt(b"hello")) == b"hello"
    assert ours.decrypt(library.encrypt(b"hello")) == b"hello"


def test_after_rotation_new_events_use_the_new_key_and_old_ones_still_open(
    tmp_path: Path,
) -> None:
    config = settings(tmp_path)
    before = cipher(cipher_key(config))
    old = before.encrypt(b"old event")
    assert rotate(config) == "k1"
    after = cipher(cipher_key(config))
    new = after.encrypt(b"new event")
    assert new.startswith(MAGIC + b"\x02k1") and not old.startswith(MAGIC)
    assert (after.decrypt(old), after.decrypt(new)) == (b"old event", b"new event")
    with pytest.raises(ValueError, match="sealed with key k1, which the key ring lacks"):
        before.decrypt(new)
    assert rotate(config) == "k2"
    assert cipher(cipher_key(config)).decrypt(new) == b"new event"
    assert (tmp_path / "cipher.key").stat().st_mode & 0o777 == 0o600


def test_fingerprints_do_not_change_with_rotation(tmp_path: Path) -> None:
    config = settings(tmp_path)
    before = secret_fingerprint(cipher_key(config))("p4ss")
    rotate(config)
    assert secret_fingerprint(cipher_key(config))("p4ss") == before


def test_keys_from_the_environment_are_rotated_by_hand(tmp_path: Path) -> None:
    key = AESCipher.create_key(32)
    with pytest.raises(SettingsError, match=r"append this to it, then restart: ,k1:"):
        rotate(settings(tmp_path, key))
    ring = f"{key},k1:{AESCipher.create_key(16)}"
    assert cipher_key(settings(tmp_path, ring)).startswith("k0:")
    with pytest.raises(SettingsError, match="k1 must be 16, 24 or 32 bytes"):
        cipher_key(settings(tmp_path, f"{key},k1:c2hvcnQ="))
