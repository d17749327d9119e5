"""Digest authentication for SIP (RFC 3261 22, RFC 7616, RFC 8760): MD5 and SHA-256,
`qop=auth` with a counted `nc` and a fresh cnonce, or the RFC 2069 form without qop."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from sipagent.sip.message import SipParseError, quote, split_list, unquote

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass(frozen=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str = ""
    stale: bool = False
    proxy: bool = False  # from a 407 Proxy-Authenticate: answer in Proxy-Authorization

    @property
    def header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"


def parse_challenge(value: str, proxy: bool = False) -> Challenge:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipParseError(f"not a Digest challenge: '{value[:60]}'")
    params: dict[str, str] = {}
    for item in split_list(rest):
        name, eq, raw = item.partition("=")
        if not eq:
            continue
        params[name.strip().lower()] = unquote(raw)
    if "realm" not in params or "nonce" not in params:
        raise SipParseError("a Digest challenge needs realm and nonce")
    algorithm = params.get("algorithm", "MD5").upper()
    return Challenge(
        realm=params["realm"], nonce=params["nonce"], algorithm=algorithm,
        qop=tuple(q.strip() for q in params.get("qop", "").split(",") if q.strip()),
        opaque=params.get("opaque", ""), stale=params.get("stale", "").lower() == "true",
        proxy=proxy)


def _hash(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()


@dataclass
class DigestClient:
    """One credential's answers; `nc` counts per nonce, as RFC 7616 3.4 requires."""

    username: str
    password: str
    _counts: dict[str, int] = field(default_factory=dict)

    def answer(self, challenge: Challenge, method: str, uri: str,
               cnonce: str | None = None) -> str:
        if challenge.algorithm not in ALGORITHMS:
            raise SipParseError(f"unsupported digest algorithm {challenge.algorithm}")
        algorithm = challenge.algorithm
        ha1 = _hash(algorithm, f"{self.username}:{challenge.realm}:{self.password}")
        ha2 = _hash(algorithm, f"{method}:{uri}")
        parts = [f"username={quote(self.username)}", f"realm={quote(challenge.realm)}",
                 f"nonce={quote(challenge.nonce)}", f"uri={quote(uri)}"]
        if "auth" in challenge.qop:
            count = self._counts.get(challenge.nonce, 0) + 1
            self._counts = {challenge.nonce: count}  # only the current nonce matters
            nc = f"{count:08x}"
            cnonce = cnonce or os.urandom(8).hex()
            response = _hash(algorithm, f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:auth:{ha2}")
            parts += [f'response="{response}"', f"algorithm={algorithm}",
                      f"cnonce={quote(cnonce)}", "qop=auth", f"nc={nc}"]
        else:
            response = _hash(algorithm, f"{ha1}:{challenge.nonce}:{ha2}")
            parts += [f'response="{response}"', f"algorithm={algorithm}"]
        if challenge.opaque:
            parts.append(f"opaque={quote(challenge.opaque)}")
        return "Digest " + ", ".join(parts)
