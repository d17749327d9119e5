"""Value objects of a trunk. Each parser returns the canonical form or raises ValueError
with a message that names the rule broken; callers attach the field name."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

UNLIMITED = 9999
MAX_NAME = 64
MAX_DESCRIPTION = 1024
MAX_REASON = 500
MAX_REQUEST_ID = 128
# Caps on repeated fields: a request cannot grow the views without bound (the README's
# "Limits" lists them). Checked before any item is parsed.
MAX_PEER_ADDRESSES = 32
MAX_LOCAL_NETWORKS = 32
MAX_CODECS = 8
MAX_DIAL_PATTERNS = 100
MAX_ROUTE_TRUNKS = 32
MAX_ALLOWED_EXTENSIONS = 100
# Every pattern here is applied with fullmatch: `$` would also accept a trailing newline.
DOMAIN_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
SIP_USER_FORBIDDEN = re.compile(r"[\s@:<>\"]")
E = TypeVar("E", bound=StrEnum)


class TrunkType(StrEnum):
    REGISTER = "register"
    PEER = "peer"
    ACCOUNT = "account"


class Transport(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"

    @property
    def default_port(self) -> int:
        return 5061 if self is Transport.TLS else 5060


class Codec(StrEnum):
    PCMU = "PCMU"
    PCMA = "PCMA"
    G729 = "G729"
    OPUS = "OPUS"


class DtmfMode(StrEnum):
    RFC2833 = "rfc2833"
    INFO = "info"
    INBAND = "inband"


def check_count(items: list[object] | tuple[object, ...], limit: int) -> None:
    if len(items) > limit:
        raise ValueError(f"at most {limit} items (got {len(items)})")


def parse_enum(kind: type[E], text: str, *, case: str = "lower") -> E:
    value = text.strip().upper() if case == "upper" else text.strip().lower()
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise ValueError(f"'{text}' is not one of {allowed}") from None


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def is_ip(self) -> bool:
        return _ip_or_none(self.host) is not None


def _ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError(f"port '{text}' must be a number from 1 to 65535")
    return int(text)


def parse_domain(text: str) -> str:
    name = text.strip().lower().rstrip(".")
    if not name or len(name) > 253:
        raise ValueError("a domain name has 1 to 253 characters")
    labels = name.split(".")
    for label in labels:
        if not DOMAIN_LABEL.fullmatch(label):
            raise ValueError(
                f"'{text}' is not a valid domain name (label '{label}': letters, digits and "
                "inner hyphens, 1-63 characters)"
            )
    if labels[-1].isdigit():
        raise ValueError(f"'{text}' is neither a valid IP address nor a domain name")
    return name


def parse_ip(text: str) -> str:
    address = _ip_or_none(text.strip())
    if address is None:
        raise ValueError(f"'{text}' is not an IPv4 or IPv6 address")
    return str(address)


def parse_host_port(text: str, *, ip_only: bool = False) -> HostPort:
    raw = text.strip()
    if not raw:
        raise ValueError("must not be empty")
    port: int | None = None
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep:
            raise ValueError(f"'{text}' opens '[' for an IPv6 address but never closes it")
        address = _ip_or_none(host)
        if not isinstance(address, ipaddress.IPv6Address):
            raise ValueError(f"'{host}' inside [] is not an IPv6 address")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"'{text}': only ':port' may follow ']'")
            port = parse_port(rest[1:])
        return HostPort(str(address), port)
    if raw.count(":") > 1:
        if _ip_or_none(raw) is None:
            raise ValueError(
                f"'{text}' is not a valid IPv6 address (with a port write [addr]:port)"
            )
        return HostPort(str(ipaddress.ip_address(raw)))
    host, sep, port_text = raw.partition(":")
    if sep:
        port = parse_port(port_text)
    address = _ip_or_none(host)
    if address is not None:
        return HostPort(str(address), port)
    if ip_only:
        raise ValueError(f"'{host}' is not an IP address (a peer address is IP or IP:port)")
    return HostPort(parse_domain(host), port)


def parse_cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=True))
    except ValueError as error:
        if "has host bits set" in str(error):
            network = ipaddress.ip_network(text.strip(), strict=False)
            raise ValueError(f"'{text}' has host bits set; did you mean {network}?") from None
        raise ValueError(f"'{text}' is not a network in CIDR form (e.g. 10.0.0.0/8)") from None


def check_printable(text: str, *, allow_newlines: bool = False) -> None:
    """No control or format characters (escape sequences, bidi overrides, zero-width
    letters, line separators); a description may have line feeds and tabs."""
    for index, char in enumerate(text):
        if allow_newlines and char in "\n\t":
            continue
        if not char.isprintable():
            raise ValueError(f"control character {char!r} at position {index} is not allowed")


def parse_name(text: str) -> str:
    """Stored in NFC (one spelling of `café`); compared by `domain.text.name_key`."""
    name = unicodedata.normalize("NFC", text.strip())
    if not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"must have 1 to {MAX_NAME} characters (got {len(name)})")
    check_printable(name)
    return name


def parse_tenant(text: str) -> str:
    if not TENANT.fullmatch(text):
        raise ValueError(f"'{text[:80]}' is not a tenant id (a-z, 0-9, '-', '_', up to 64, "
                         "starting with a letter or digit)")
    return text


def parse_reason(text: str) -> str:
    """Why a change was made: one printable line (it is shown in tables and exports)."""
    if len(text) > MAX_REASON:
        raise ValueError(f"must have at most {MAX_REASON} characters (got {len(text)})")
    check_printable(text)
    return text


def parse_request_id(text: str) -> str:
    if len(text) > MAX_REQUEST_ID:
        raise ValueError(f"must have at most {MAX_REQUEST_ID} characters (got {len(text)})")
    check_printable(text)
    return text


def parse_sip_user(text: str, *, in_uri: bool = True) -> str:
    """A user name; one that goes into a SIP URI (username, from_user) takes no backslash
    either. An auth_id only travels quoted (and escaped) in the Authorization header."""
    if not 1 <= len(text) <= 128:
        raise ValueError(f"must have 1 to 128 characters (got {len(text)})")
    check_printable(text)
    bad = SIP_USER_FORBIDDEN.search(text)
    if bad:
        raise ValueError(f"'{bad.group()}' is not allowed in a SIP user name")
    if in_uri and "\\" in text:
        raise ValueError("'\\' is not allowed in a SIP user name that goes into a URI")
    return text


def parse_password(text: str) -> str:
    if not 1 <= len(text) <= 256:
        raise ValueError(f"must have 1 to 256 characters (got {len(text)})")
    check_printable(text)
    return text


def parse_description(text: str) -> str:
    if len(text) > MAX_DESCRIPTION:
        raise ValueError(f"must have at most {MAX_DESCRIPTION} characters (got {len(text)})")
    check_printable(text, allow_newlines=True)
    return text


# Other spellings of the codecs, as PBX forms and provider documents write them: the source
# documentation's "G.711u (PCMU)", the ulaw/alaw of Asterisk's allow=, G.711's own names.
# (U+039C is what both the micro sign and the Greek mu of "µ-law" become in upper case.)
CODEC_ALIASES = {
    "ULAW": Codec.PCMU, "MULAW": Codec.PCMU, "\u039cLAW": Codec.PCMU, "G711U": Codec.PCMU,
    "G711ULAW": Codec.PCMU, "G711MULAW": Codec.PCMU,
    "ALAW": Codec.PCMA, "G711A": Codec.PCMA, "G711ALAW": Codec.PCMA,
}
CODEC_NOISE = re.compile(r"[\s.\-_/]")
CODEC_IN_PARENTHESES = re.compile(r"^[^()]*\(([^()]+)\)\s*$")


def parse_codec(text: str) -> Codec:
    """The canonical codec of any usual spelling: PCMU, pcmu, G.711u (PCMU), ulaw, u-law."""
    inner = CODEC_IN_PARENTHESES.match(text)
    key = CODEC_NOISE.sub("", (inner.group(1) if inner else text).upper())
    if key in CODEC_ALIASES:
        return CODEC_ALIASES[key]
    try:
        return Codec(key)
    except ValueError:
        allowed = ", ".join(m.value for m in Codec)
        raise ValueError(f"'{text}' is not one of {allowed}") from None


def parse_limit(value: int | None) -> int | None:
    if value is None or value == UNLIMITED:
        return None
    if not 0 <= value <= UNLIMITED:
        raise ValueError(
            f"must be 0 to {UNLIMITED} ({UNLIMITED} or unset = unlimited), got {value}"
        )
    return value
