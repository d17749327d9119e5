"""STUN Binding (RFC 5389), the client half: what the agent needs to learn the public
mapping of its SIP socket behind NAT. The request leaves from the SIP UDP socket itself
(a mapping belongs to a socket: another socket's would say nothing about it), so the
answer arrives there among SIP datagrams and is told apart by its first bits: a STUN
message starts with two zero bits and carries the magic cookie 0x2112A442 at byte 4,
which no SIP message can (it starts with a method name or "SIP/2.0")."""

from __future__ import annotations

import ipaddress
import os
import struct
from dataclasses import dataclass

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111
MAPPED_ADDRESS = 0x0001
XOR_MAPPED_ADDRESS = 0x0020
ERROR_CODE = 0x0009
HEADER = struct.Struct("!HHI12s")
FAMILIES = {0x01: 4, 0x02: 16}  # address family -> address length


class StunError(ValueError):
    """A STUN answer that says no, or that cannot be read."""


@dataclass(frozen=True)
class Mapping:
    """The address and port a STUN server saw our datagram come from."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def is_stun(data: bytes) -> bool:
    """Whether a datagram is STUN rather than SIP (RFC 5389 section 6 and RFC 7983)."""
    return len(data) >= HEADER.size and data[0] < 0x04 and \
        int.from_bytes(data[4:8], "big") == MAGIC_COOKIE


def binding_request() -> tuple[bytes, bytes]:
    """(transaction id, the Binding request without attributes)."""
    transaction = os.urandom(12)
    return transaction, HEADER.pack(BINDING_REQUEST, 0, MAGIC_COOKIE, transaction)


def transaction_of(data: bytes) -> bytes:
    return data[8:20]


def parse_binding_response(data: bytes) -> Mapping:
    """The mapping of a Binding success response: XOR-MAPPED-ADDRESS, else the older
    MAPPED-ADDRESS (RFC 3489 servers). Raises StunError for an error response (with its
    code and reason) or anything unreadable."""
    kind, length, _, transaction = HEADER.unpack_from(data)
    if len(data) < HEADER.size + length:
        raise StunError("truncated STUN message")
    attributes = _attributes(data[HEADER.size:HEADER.size + length])
    if kind == BINDING_ERROR:
        raise StunError(_error_text(attributes.get(ERROR_CODE, b"")))
    if kind != BINDING_SUCCESS:
        raise StunError(f"not a Binding response (type 0x{kind:04x})")
    if XOR_MAPPED_ADDRESS in attributes:
        return _address(attributes[XOR_MAPPED_ADDRESS], transaction, xor=True)
    if MAPPED_ADDRESS in attributes:
        return _address(attributes[MAPPED_ADDRESS], transaction, xor=False)
    raise StunError("the Binding response carries no mapped address")


def _attributes(body: bytes) -> dict[int, bytes]:
    """Attribute type -> value; the first of each type counts (RFC 5389 15)."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(body):
        kind, length = struct.unpack_from("!HH", body, offset)
        value = body[offset + 4:offset + 4 + length]
        if len(value) < length:
            raise StunError("truncated STUN attribute")
        found.setdefault(kind, value)
        offset += 4 + length + (-length % 4)  # values are padded to 4 bytes
    return found


def _address(value: bytes, transaction: bytes, xor: bool) -> Mapping:
    if len(value) < 4 or value[1] not in FAMILIES or len(value) < 4 + FAMILIES[value[1]]:
        raise StunError("unreadable mapped address")
    size = FAMILIES[value[1]]
    port = struct.unpack_from("!H", value, 2)[0]
    raw = value[4:4 + size]
    if xor:
        port ^= MAGIC_COOKIE >> 16
        key = struct.pack("!I", MAGIC_COOKIE) + transaction
        raw = bytes(b ^ k for b, k in zip(raw, key, strict=False))
    return Mapping(str(ipaddress.ip_address(raw)), port)


def _error_text(value: bytes) -> str:
    if len(value) < 4:
        return "Binding error response"
    code = (value[2] & 0x07) * 100 + value[3]
    reason = value[4:].decode("utf-8", "replace")
    return f"STUN error {code} {reason}".strip()
