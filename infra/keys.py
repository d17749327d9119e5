"""The AES-GCM key that encrypts stored events: from TRUNKPLANE_CIPHER_KEY, or from a key
file created with mode 0600 on first start."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable
from pathlib import Path

from eventsourcing.cryptography import AESCipher

from infra.settings import Settings, SettingsError

KEY_FILE = "cipher.key"


def cipher_key(settings: Settings, create: bool = True) -> str:
    if settings.cipher_key:
        return _checked(settings.cipher_key, "TRUNKPLANE_CIPHER_KEY")
    path = settings.data_dir / KEY_FILE
    if path.exists():
        return _checked(path.read_text().strip(), str(path))
    if not create:
        raise SettingsError(f"no cipher key: set TRUNKPLANE_CIPHER_KEY or TRUNKPLANE_DATA to "
                            f"the directory holding {KEY_FILE} (looked in {path})")
    return _create(path)


def _create(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = AESCipher.create_key(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _checked(key: str, source: str) -> str:
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"{source}: the cipher key must be base64") from None
    if len(raw) not in AESCipher.KEY_SIZES:
        raise SettingsError(f"{source}: the cipher key must be 16, 24 or 32 bytes, not {len(raw)}")
    return key


def secret_fingerprint(key: str) -> Callable[[str], str]:
    """A keyed fingerprint of a secret: views can tell that a password changed without
    holding it, and without the key nobody can test guesses against it."""
    mac_key = hmac.new(base64.b64decode(key), b"trunkplane secret fingerprint",
                       hashlib.sha256).digest()

    def fingerprint(secret: str) -> str:
        return hmac.new(mac_key, secret.encode(), hashlib.sha256).hexdigest()[:32]

    return fingerprint
