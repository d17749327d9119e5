"""The keys that encrypt stored events: a key ring, oldest first, the newest encrypting.

Sources: TRUNKPLANE_CIPHER_KEY (one base64 key, or `id:key,id:key`), or the key file in
the data directory, created with mode 0600 on first start (one line per key: `key` for
the first, `id key` after a rotation). Events written before any rotation keep the
library's AES-GCM format and decrypt with the first key; later ones carry the id of the
key that sealed them, so old events stay readable whatever the ring's newest key is."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import Cipher
from eventsourcing.utils import Environment

from infra.config.settings import Settings, SettingsError

KEY_FILE = "cipher.key"
FIRST_ID = "k0"
MAGIC = b"TPK\x01"
Ring = list[tuple[str, str]]


def cipher_key(settings: Settings, create: bool = True) -> str:
    """The key ring as the store's CIPHER_KEY setting: `id:key,id:key`."""
    return _format(key_ring(settings, create))


def key_ring(settings: Settings, create: bool = True) -> Ring:
    if settings.cipher_key:
        return _checked(_parse(settings.cipher_key, ","), "TRUNKPLANE_CIPHER_KEY")
    path = settings.data_dir / KEY_FILE
    if path.exists():
        return _checked(_parse(path.read_text(), "\n"), str(path))
    if not create:
        raise SettingsError(f"no cipher key: set TRUNKPLANE_CIPHER_KEY or TRUNKPLANE_DATA to "
                            f"the directory holding {KEY_FILE} (looked in {path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = AESCipher.create_key(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return [(FIRST_ID, key)]


def rotate(settings: Settings) -> str:
    """Adds a new key to the ring in the key file; returns its id."""
    new = AESCipher.create_key(32)
    ring = key_ring(settings, create=False)
    new_id = f"k{len(ring)}"
    if settings.cipher_key:
        raise SettingsError(
            "the keys come from TRUNKPLANE_CIPHER_KEY: append this to it, then restart: "
            f",{new_id}:{new}")
    path = settings.data_dir / KEY_FILE
    with path.open("a") as handle:
        handle.write(f"{new_id} {new}\n")
    return new_id


def _parse(text: str, separator: str) -> Ring:
    ring: Ring = []
    for number, item in enumerate(i.strip() for i in text.split(separator) if i.strip()):
        key_id, _, key = item.replace(":", " ", 1).rpartition(" ")
        ring.append((key_id.strip() or (FIRST_ID if number == 0 else f"k{number}"), key))
    return ring


def _format(ring: Ring) -> str:
    return ",".join(f"{key_id}:{key}" for key_id, key in ring)


def _checked(ring: Ring, source: str) -> Ring:
    if not ring:
        raise SettingsError(f"{source}: no cipher key")
    for key_id, key in ring:
        try:
            raw = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise SettingsError(f"{source}: the cipher key must be base64") from None
        if len(raw) not in AESCipher.KEY_SIZES:
            raise SettingsError(f"{source}: the cipher key {key_id} must be 16, 24 or 32 bytes, "
                                f"not {len(raw)}")
    return ring


class KeyRingCipher(Cipher):
    """eventsourcing's cipher strategy over a key ring (CIPHER_TOPIC points here)."""

    def __init__(self, environment: Environment) -> None:
        ring = _parse(environment.get("CIPHER_KEY") or "", ",")
        if not ring:
            raise OSError("'CIPHER_KEY' not in env")
        self._keys = {key_id: AESGCM(base64.b64decode(key)) for key_id, key in ring}
        self._first = self._keys[ring[0][0]]
        self._current_id = ring[-1][0] if len(ring) > 1 else ""

    def encrypt(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        if not self._current_id:  # never rotated: the library's own format
            sealed = self._first.encrypt(nonce, plaintext, None)
            return nonce + sealed[-16:] + sealed[:-16]
        key_id = self._current_id.encode()
        return MAGIC + bytes([len(key_id)]) + key_id + nonce + self._keys[
            self._current_id].encrypt(nonce, plaintext, None)

    def decrypt(self, ciphertext: bytes) -> bytes:
        if ciphertext.startswith(MAGIC):
            size = ciphertext[len(MAGIC)]
            start = len(MAGIC) + 1
            key_id = ciphertext[start:start + size].decode(errors="replace")
            body = ciphertext[start + size:]
            key = self._keys.get(key_id)
            if key is not None:
                try:
                    return key.decrypt(body[:12], body[12:], None)
                except InvalidTag:
                    pass  # a first-key ciphertext that happens to start like a ringed one
            elif not self._legacy_opens(ciphertext):
                raise ValueError(f"sealed with key {key_id}, which the key ring lacks")
        return self._legacy(ciphertext)

    def _legacy_opens(self, ciphertext: bytes) -> bool:
        try:
            self._legacy(ciphertext)
        except ValueError:
            return False
        return True

    def _legacy(self, ciphertext: bytes) -> bytes:
        nonce, tag, body = ciphertext[:12], ciphertext[12:28], ciphertext[28:]
        try:
            return self._first.decrypt(nonce, body + tag, None)
        except InvalidTag:
            raise ValueError("Invalid cipher tag") from None


def secret_fingerprint(key: str) -> Callable[[str], str]:
    """A keyed fingerprint of a secret: views can tell that a password changed without
    holding it, and without the key nobody can test guesses against it. Derived from the
    ring's first key, so that it stays the same across rotations."""
    first = _parse(key, ",")[0][1]
    mac_key = hmac.new(base64.b64decode(first), b"trunkplane secret fingerprint",
                       hashlib.sha256).digest()

    def fingerprint(secret: str) -> str:
        return hmac.new(mac_key, secret.encode(), hashlib.sha256).hexdigest()[:32]

    return fingerprint
