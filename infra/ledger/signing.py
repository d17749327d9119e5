"""Signed tree heads (Ed25519). The signing key is read from TRUNKPLANE_SIGNING_KEY (the
raw 32-byte key in base64, or PEM) or the file TRUNKPLANE_SIGNING_KEY_FILE names, which an
operator may keep on another volume than the data; with neither, a key file is created in
the data directory (mode 0600). A head says: the log of `size` events had this `root` at
this time; anyone with the public key checks it with hashlib and `cryptography` alone."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from infra.config.settings import Settings, SettingsError

SIGNING_KEY_FILE = "signing.key"
CONTEXT = b"trunkplane tree head v1\x00"
LAYOUT = struct.Struct(">QQ")


class SigningKeyError(SettingsError):
    pass


def head_message(size: int, timestamp_ms: int, root: bytes) -> bytes:
    """The signed bytes: a context string, size and time (8 bytes each, big-endian), root."""
    return CONTEXT + LAYOUT.pack(size, timestamp_ms) + root


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_bytes(public)).hexdigest()[:16]


def public_bytes(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class SignedHead:
    size: int
    timestamp_ms: int
    root: bytes
    key_id: str
    signature: bytes

    def verify(self, public: Ed25519PublicKey) -> bool:
        try:
            public.verify(self.signature, head_message(self.size, self.timestamp_ms, self.root))
        except InvalidSignature:
            return False
        return key_id(public) == self.key_id

    def as_json(self) -> dict[str, Any]:
        return {"size": self.size, "timestamp_ms": self.timestamp_ms, "root": self.root.hex(),
                "key_id": self.key_id, "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SignedHead:
        return cls(int(doc["size"]), int(doc["timestamp_ms"]), bytes.fromhex(doc["root"]),
                   str(doc["key_id"]), bytes.fromhex(doc["signature"]))


class HeadSigner:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self.private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    def sign(self, size: int, root: bytes, timestamp_ms: int) -> bytes:
        return self.private.sign(head_message(size, timestamp_ms, root))

    def head(self, size: int, root: bytes, timestamp_ms: int) -> SignedHead:
        return SignedHead(size, timestamp_ms, root, self.key_id,
                          self.sign(size, root, timestamp_ms))

    def public_base64(self) -> str:
        return base64.b64encode(public_bytes(self.public)).decode()

    def private_base64(self) -> str:
        return base64.b64encode(self.private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())).decode()


def load_signer(settings: Settings, create: bool = True) -> HeadSigner:
    """The signing key from the environment, the named file, or the data directory."""
    if settings.signing_key:
        return HeadSigner(_parse(settings.signing_key.encode(), "TRUNKPLANE_SIGNING_KEY"))
    named = settings.signing_key_file
    path = signing_key_path(settings)
    if path.exists():
        return HeadSigner(_parse(path.read_bytes(), str(path)))
    if named or not create:
        raise SigningKeyError(f"no signing key at {path}: create one with `trunkplane keys "
                              "signing-key --output PATH` or unset TRUNKPLANE_SIGNING_KEY_FILE")
    return HeadSigner(write_key(path))


def signing_key_path(settings: Settings) -> Path:
    named = settings.signing_key_file
    return Path(named) if named else settings.data_dir / SIGNING_KEY_FILE


def write_key(path: Path) -> Ed25519PrivateKey:
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(raw).decode() + "\n")
    return private


def _parse(text: bytes, source: str) -> Ed25519PrivateKey:
    if text.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_private_key(text, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{source}: not an Ed25519 private key")
        return key
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError(f"{source}: the signing key must be base64 or PEM") from None
    if len(raw) != 32:
        raise SigningKeyError(f"{source}: an Ed25519 key is 32 bytes, not {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text))
