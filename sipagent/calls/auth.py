"""Digest authentication of the PBX on the PBX face (RFC 3261 22.3, RFC 7616): 407 with a
stateless nonce (time + HMAC), checked with MD5 or SHA-256, `qop=auth` or none."""

from __future__ import annotations

import hashlib
import hmac
import os
import time

from sipagent.sip.digest import ALGORITHMS
from sipagent.sip.message import SipParseError, split_list

REALM = "trunkplane"
NONCE_AGE = 300.0


class DigestServer:
    def __init__(self, realm: str = REALM, secret: bytes | None = None) -> None:
        self.realm = realm
        self._secret = secret or os.urandom(32)

    def challenge(self, stale: bool = False) -> str:
        stamp = f"{int(time.time()):x}"
        nonce = f"{stamp}.{self._sign(stamp)}"
        extra = ", stale=true" if stale else ""
        return (f'Digest realm="{self.realm}", nonce="{nonce}", algorithm=MD5, '
                f'qop="auth"{extra}')

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:20]

    def check(self, header: str, method: str, username: str, password: str) -> str:
        """'ok', 'stale' (a good answer to an old nonce) or 'bad'."""
        try:
            params = parse_params(header)
        except SipParseError:
            return "bad"
        nonce = params.get("nonce", "")
        stamp, _, signature = nonce.partition(".")
        if not hmac.compare_digest(signature, self._sign(stamp)):
            return "bad"
        if params.get("username") != username or params.get("realm") != self.realm:
            return "bad"
        algorithm = params.get("algorithm", "MD5").upper()
        digest = ALGORITHMS.get(algorithm)
        if digest is None:
            return "bad"

        def h(text: str) -> str:
            return digest(text.encode("utf-8")).hexdigest()

        ha1 = h(f"{username}:{self.realm}:{password}")
        ha2 = h(f"{method}:{params.get('uri', '')}")
        if params.get("qop") == "auth":
            expected = h(f"{ha1}:{nonce}:{params.get('nc', '')}:{params.get('cnonce', '')}"
                         f":auth:{ha2}")
        else:
            expected = h(f"{ha1}:{nonce}:{ha2}")
        if not hmac.compare_digest(expected, params.get("response", "").lower()):
            return "bad"
        try:
            age = time.time() - int(stamp, 16)
        except ValueError:
            return "bad"
        return "ok" if age <= NONCE_AGE else "stale"


def parse_params(header: str) -> dict[str, str]:
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipParseError("not a Digest answer")
    params: dict[str, str] = {}
    for item in split_list(rest):
        name, eq, raw = item.partition("=")
        if eq:
            raw = raw.strip()
            params[name.strip().lower()] = raw[1:-1] if raw.startswith('"') else raw
    return params
