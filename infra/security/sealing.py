"""Sealing secrets that leave the store: for the broker (the wire key ring) and for a
configuration backup (a passphrase). Together with the store's key ring
(infra.security.keys) these are the three ways trunkplane encrypts, all AES-GCM with the
secret bound by associated data to where it belongs. Their formats differ because each is
already written somewhere that must stay readable: stored events (the library's layout),
Kafka records (the Avro SealedSecret record) and backup documents (base64 in JSON)."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from domain.errors import ValidationError

SCRYPT = {"n": 2**15, "r": 8, "p": 1}


class SealError(ValueError):
    """A sealed secret that does not open: a key the ring lacks, or a tampered seal."""


class WireCipher:
    """Seals secrets for the broker with a key ring shared by control planes and agents
    (TRUNKPLANE_WIRE_KEY, `id:base64key,...`, newest last). It is a different ring from
    the store's: an agent can read the credentials it needs and nothing else."""

    def __init__(self, ring: str) -> None:
        keys: dict[str, AESGCM] = {}
        for item in (i.strip() for i in ring.split(",") if i.strip()):
            key_id, sep, key = item.partition(":")
            if not sep or not key_id:
                raise ValueError("TRUNKPLANE_WIRE_KEY: write it as id:base64key[,id:key...]")
            try:
                keys[key_id] = AESGCM(base64.b64decode(key, validate=True))
            except ValueError as error:
                raise ValueError(f"TRUNKPLANE_WIRE_KEY: key {key_id}: {error}") from None
        if not keys:
            raise ValueError("TRUNKPLANE_WIRE_KEY is empty")
        self._keys = keys
        self.current = list(keys)[-1]
        self._pool = b""
        self._pool_lock = threading.Lock()

    @staticmethod
    def new_key() -> str:
        return base64.b64encode(AESGCM.generate_key(256)).decode()

    def _nonce(self) -> bytes:
        """Random 96-bit nonces, drawn from the kernel 4 KiB at a time (one getrandom
        call costs ~10 us here, as much as the sealing itself)."""
        with self._pool_lock:  # never the same nonce twice, whatever the threads
            if len(self._pool) < 12:
                self._pool = os.urandom(4092)
            nonce, self._pool = self._pool[:12], self._pool[12:]
        return nonce

    def seal(self, secret: str, bound_to: str) -> dict[str, Any]:
        nonce = self._nonce()
        sealed = self._keys[self.current].encrypt(nonce, secret.encode(), bound_to.encode())
        return {"key_id": self.current, "nonce": nonce, "ciphertext": sealed}

    def open(self, sealed: Mapping[str, Any], bound_to: str) -> str:
        key = self._keys.get(sealed["key_id"])
        if key is None:
            raise SealError(f"secret sealed with wire key {sealed['key_id']!r}, which "
                            f"TRUNKPLANE_WIRE_KEY lacks (it has {', '.join(self._keys)})")
        try:
            return key.decrypt(sealed["nonce"], sealed["ciphertext"], bound_to.encode()).decode()
        except InvalidTag:
            raise SealError("a sealed secret does not open with its key: wrong key or "
                            "tampered payload") from None


class PassphraseSealer:
    """Seals secrets for a passphrase; the salt travels in the document."""

    def __init__(self, passphrase: str, salt: bytes | None = None) -> None:
        if len(passphrase) < 8:
            raise ValidationError.single("passphrase", "must have at least 8 characters")
        self.salt = salt or os.urandom(16)
        kdf = Scrypt(salt=self.salt, length=32, **SCRYPT)
        self._aead = AESGCM(kdf.derive(passphrase.encode()))

    def seal(self, secret: str, context: str) -> str:
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self._aead.encrypt(
            nonce, secret.encode(), context.encode())).decode()

    def open(self, sealed: str, context: str) -> str:
        raw = base64.b64decode(sealed)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag:
            raise ValidationError.single(
                "passphrase", f"does not open the sealed password of {context}") from None

    def header(self) -> dict[str, Any]:
        return {"kdf": "scrypt", "salt": base64.b64encode(self.salt).decode(), **SCRYPT}
