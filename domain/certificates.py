"""A trunk's TLS client certificate and key, in PEM: checked with the standard library's
ssl module alone (the domain takes no third-party library), which is also what the agent
loads them with, so what is accepted here is what the agent can present."""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MAX_PEM = 16 * 1024  # a certificate chain of a few certificates, or one RSA 8192 key
_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
KEY_KINDS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")


@dataclass(frozen=True)
class CertificateFacts:
    subject: str
    not_after: datetime | None


def _blocks(text: str) -> list[tuple[str, bytes]]:
    if len(text) > MAX_PEM:
        raise ValueError(f"must have at most {MAX_PEM} characters of PEM (got {len(text)})")
    found = []
    for match in _BLOCK.finditer(text):
        body = "".join(line for line in match.group(2).splitlines()
                       if ":" not in line)  # RFC 1421 headers (Proc-Type...) are not base64
        try:
            found.append((match.group(1), base64.b64decode(body, validate=True)))
        except (binascii.Error, ValueError):
            raise ValueError(f"a {match.group(1)} block is not valid base64") from None
    return found


def parse_certificate(text: str) -> str:
    """One or more CERTIFICATE blocks (the client's first, then its chain), nothing else."""
    blocks = _blocks(text)
    if not blocks or any(kind != "CERTIFICATE" for kind, _ in blocks):
        raise ValueError("must be PEM: one or more -----BEGIN CERTIFICATE----- blocks, the "
                         "client's certificate first")
    return text.strip() + "\n"


def parse_key(text: str) -> str:
    blocks = _blocks(text)
    if len(blocks) != 1 or blocks[0][0] not in (*KEY_KINDS, "ENCRYPTED PRIVATE KEY"):
        raise ValueError("must be one PEM private key (-----BEGIN PRIVATE KEY-----)")
    if blocks[0][0] == "ENCRYPTED PRIVATE KEY" or "ENCRYPTED" in text.split("-----END")[0]:
        raise ValueError("must not be protected by a passphrase: give the key in clear over "
                         "TLS; it is stored encrypted and never shown")
    return text.strip() + "\n"


@contextlib.contextmanager
def pem_files(certificate: str, key: str) -> Iterator[tuple[str, str]]:
    """The certificate and key as files readable only by this process, for ssl, which
    loads them from files alone. On Linux they are anonymous memory (memfd), so the clear
    key never reaches a disk, even if the process is killed inside; elsewhere a 0600 file
    in a 0700 folder, removed on leaving."""
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        descriptors = []
        try:
            for name, text in (("cert.pem", certificate), ("key.pem", key)):
                descriptor = os.memfd_create(f"trunkplane-{name}", os.MFD_CLOEXEC)
                descriptors.append(descriptor)
                data = text.encode()
                while data:
                    data = data[os.write(descriptor, data):]
            yield f"/proc/self/fd/{descriptors[0]}", f"/proc/self/fd/{descriptors[1]}"
        finally:
            for descriptor in descriptors:
                os.close(descriptor)
        return
    with tempfile.TemporaryDirectory(prefix="trunkplane-cert-") as folder:
        paths = []
        for name, text in (("cert.pem", certificate), ("key.pem", key)):
            path = Path(folder) / name
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(text)
            paths.append(str(path))
        yield paths[0], paths[1]


def load_client_certificate(context: ssl.SSLContext, certificate: str, key: str) -> None:
    """Makes `context` present the certificate; ssl.SSLError when the key does not match."""
    with pem_files(certificate, key) as (cert_path, key_path):
        context.load_cert_chain(cert_path, key_path, password=_no_passphrase)


def _no_passphrase() -> str:
    """Never asked for a passphrase on a terminal: an encrypted key simply fails."""
    raise ValueError("the key is protected by a passphrase")


def check_pair(certificate: str, key: str) -> CertificateFacts:
    """ValueError when the key is not the certificate's; else its subject and expiry."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        load_client_certificate(context, certificate, key)
    except ssl.SSLError as error:
        reason = "KEY_VALUES_MISMATCH" in str(error) or "mismatch" in str(error).lower()
        raise ValueError("the key does not match the certificate" if reason
                         else f"cannot be loaded: {error.reason or error}") from None
    return facts(certificate)


def facts(certificate: str) -> CertificateFacts:
    """Subject and expiry of the first certificate, as ssl reads them (empty when it
    cannot: they are for people, nothing depends on them)."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return CertificateFacts("", None)
    first = certificate.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    with tempfile.TemporaryDirectory(prefix="trunkplane-cert-") as folder:
        path = Path(folder) / "cert.pem"
        path.write_text(first)
        try:
            decoded = decode(str(path))
        except (ssl.SSLError, ValueError):
            return CertificateFacts("", None)
    subject = ", ".join(f"{k}={v}" for rdn in decoded.get("subject", ()) for k, v in rdn)
    not_after = decoded.get("notAfter")
    expiry = (datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
              if not_after else None)
    return CertificateFacts(subject, expiry)
