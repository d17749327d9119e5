"""SIP messages (RFC 3261 sections 7, 20 and 25): parsing and serialisation.

Liberal where the grammar allows (folded header lines, compact names, any case, LWS around
separators, unknown methods and URI schemes, odd reason phrases) and strict where a wrong
reading would act on a different message than the one sent: the start line, duplicated
single-valued headers, CSeq, Content-Length, Via, quoting and empty parameters. Anything
else malformed is a `SipParseError`, never another exception."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from domain.text import escape_control

CRLF = "\r\n"
COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
    "v": "via", "r": "refer-to", "b": "referred-by", "o": "event", "u": "allow-events",
    "x": "session-expires", "y": "identity", "a": "accept-contact", "j": "reject-contact",
    "d": "request-disposition",
}
SINGLE = frozenset({"call-id", "cseq", "from", "to", "content-length", "max-forwards",
                    "content-type"})
WORD = r"[A-Za-z0-9\-.!%*_+`'~]+"  # an RFC 3261 token
_TOKEN = re.compile(WORD)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>]+")
_STATUS = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9]) (.*)")
_CSEQ = re.compile(rf"([0-9]{{1,10}})\s+({WORD})")
_VIA = re.compile(r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-]+)\s+([^\s;]+)\s*(;.*)?", re.DOTALL)
MAX_CSEQ = 2**31 - 1
MAX_MESSAGE = 65535


class SipParseError(ValueError):
    """A malformed message; the text says what is wrong."""


@dataclass
class Message:
    headers: list[tuple[str, str]] = field(default_factory=list)  # (name as sent, value)
    body: bytes = b""

    def all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split, in order."""
        key = _canonical(name)
        values: list[str] = []
        for sent, value in self.headers:
            if _canonical(sent) == key:
                values += split_list(value) if key in LIST_HEADERS else [value]
        return values

    def get(self, name: str, default: str = "") -> str:
        """The first value: only the first header of that name is split (hot path: every
        message is read through here many times)."""
        key = _canonical(name)
        for sent, value in self.headers:
            if _canonical(sent) == key:
                if key in LIST_HEADERS:
                    return split_list(value)[0]
                return value
        return default

    def set(self, name: str, value: str) -> None:
        key = _canonical(name)
        self.headers = [(n, v) for n, v in self.headers if _canonical(n) != key]
        self.headers.append((name, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((name, value))

    def cseq(self) -> tuple[int, str]:
        number, method = self.get("cseq").split()
        return int(number), method

    def _head(self, start: str) -> bytes:
        lines = [start]
        lines += [f"{n}: {v}" for n, v in self.headers if _canonical(n) != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return (CRLF.join(lines) + CRLF + CRLF).encode("utf-8", "surrogateescape")


@dataclass
class Request(Message):
    method: str = ""
    uri: str = ""

    def to_bytes(self) -> bytes:
        return self._head(f"{self.method} {self.uri} SIP/2.0") + self.body


@dataclass
class Response(Message):
    status: int = 0
    reason: str = ""

    def to_bytes(self) -> bytes:
        return self._head(f"SIP/2.0 {self.status} {self.reason}") + self.body


LIST_HEADERS = frozenset({"via", "contact", "route", "record-route", "allow", "supported",
                          "require", "proxy-require", "unsupported", "accept"})


@functools.lru_cache(maxsize=1024)
def _canonical(name: str) -> str:
    lowered = name.strip().lower()
    return COMPACT.get(lowered, lowered)


def split_list(value: str, separator: str = ",") -> list[str]:
    """Splits on `separator` outside quoted strings and <...>; raises on an open quote."""
    if '"' not in value and "<" not in value:  # the common case, without a char loop
        return [part.strip() for part in value.split(separator)]
    parts: list[str] = []
    current: list[str] = []
    quoted = angle = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "<":
            angle = True
        elif not quoted and char == ">":
            angle = False
        elif char == separator and not quoted and not angle:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if quoted:
        raise SipParseError(f"unbalanced quotes in '{value}'")
    parts.append("".join(current).strip())
    return parts


def quote(value: str) -> str:
    """A quoted-string (RFC 3261 25.1): backslash and double quote escaped, so a value
    ending in a backslash cannot escape the closing quote."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(value: str) -> str:
    """The text of a quoted-string (quoted-pairs resolved), or the value as it is."""
    value = value.strip()
    if len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
        return value
    out: list[str] = []
    escaped = False
    for char in value[1:-1]:
        if escaped or char != "\\":
            out.append(char)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def frame_length(buffer: bytes) -> int | None:
    """On a stream: the size of the first complete message in `buffer` (head, empty line,
    Content-Length bytes of body), or None until it has arrived. Leading CRLFs (keepalives)
    count as part of it."""
    start = len(buffer) - len(buffer.lstrip(b"\r\n"))
    end = buffer.find(b"\r\n\r\n", start)
    if end < 0:
        if len(buffer) > MAX_MESSAGE:
            raise SipParseError("no end of headers within 64 KiB")
        return None
    head = buffer[start:end].decode("utf-8", "surrogateescape")
    length = 0
    for line in head.split(CRLF)[1:]:
        name, colon, value = line.partition(":")
        if colon and _canonical(name) == "content-length":
            if not (value.strip().isascii() and value.strip().isdigit()):
                raise SipParseError(f"Content-Length '{value.strip()}' is not a number")
            length = int(value.strip())
    total = end + 4 + length
    return total if len(buffer) >= total else None


def parse(data: bytes) -> Request | Response:
    """One message from a datagram or a framed stream chunk."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError(f"message of {len(data)} bytes is larger than 64 KiB")
    data = data.lstrip(b"\r\n")  # RFC 3261 7.5: CRLFs before the start line are ignored
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("no empty line ends the headers")
    head = data[:end].decode("utf-8", "surrogateescape")
    body = data[end + 4:]
    lines = _unfold(head.split(CRLF))
    message = _start(lines[0])
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name.strip()):
            raise SipParseError(f"not a header line: '{line[:80]}'")
        if "\n" in value or "\r" in value:
            raise SipParseError(f"a bare line break in the {name.strip()[:40]} header")
        message.headers.append((name.strip(), value.strip()))
    _check(message)
    message.body = _body(message, body)
    return message


def _unfold(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if len(out) < 2:
                raise SipParseError("a continuation line before any header")
            out[-1] = out[-1] + " " + line.strip()
        else:
            out.append(line)
    return out


def _start(line: str) -> Request | Response:
    if line.startswith("SIP/"):
        found = _STATUS.fullmatch(line)
        if found is None:
            raise SipParseError(f"bad status line '{line[:80]}': want SIP/2.0, a 3-digit code "
                                "from 100 to 699, and a reason")
        # The reason phrase reaches status tables and logs: controls (ESC, BEL) escaped.
        return Response(status=int(found.group(1)), reason=escape_control(found.group(2)))
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError(f"bad request line '{line[:80]}': want METHOD SP URI SP SIP/2.0 "
                            "with single spaces")
    method, uri, version = parts
    if version != "SIP/2.0":
        raise SipParseError(f"unsupported version '{version[:20]}'")
    if not _TOKEN.fullmatch(method):
        raise SipParseError(f"'{method[:40]}' is not a method token")
    if not _URI.fullmatch(uri):
        raise SipParseError(f"'{uri[:80]}' is not a Request-URI (scheme:rest, no <> or spaces)")
    return Request(method=method, uri=uri)


def _check(message: Request | Response) -> None:
    seen: dict[str, int] = {}
    for name, _ in message.headers:
        key = _canonical(name)
        seen[key] = seen.get(key, 0) + 1
        if key in SINGLE and seen[key] > 1:
            raise SipParseError(f"{key} appears more than once")
    cseq = message.get("cseq")
    if cseq:
        found = _CSEQ.fullmatch(cseq)
        if found is None or int(found.group(1)) > MAX_CSEQ:
            raise SipParseError(f"bad CSeq '{cseq[:60]}': want a number up to 2**31-1 and a "
                                "method")
        if isinstance(message, Request) and found.group(2) != message.method:
            raise SipParseError(f"CSeq method {found.group(2)} differs from the request "
                                f"method {message.method}")
    for via in message.all("via"):
        found = _VIA.fullmatch(via)
        if found is None:
            raise SipParseError(f"bad Via '{via[:80]}'")
        _params(found.group(3) or "", "Via")
    for name in ("to", "from", "contact"):
        for value in message.all(name):
            if value == "*" and name == "contact":
                continue
            split_list(value)  # raises on an unbalanced quote
            _params(_after_address(value), name)


def _after_address(value: str) -> str:
    """The header parameters of a name-addr or addr-spec value. The address ends at the
    first '>' after the first '<' outside quotes: a quoted display name or parameter may
    hold either (RFC 5626's +sip.instance="<urn:uuid:...>")."""
    quoted = escaped = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "<":
            close = value.find(">", index)
            return value[close + 1:] if close >= 0 else ""
        elif not quoted and char == ";":
            return value[index:]
    return ""


def _params(text: str, where: str) -> None:
    text = text.strip()
    if not text:
        return
    if not text.startswith(";"):
        raise SipParseError(f"{where}: unexpected '{text[:40]}' after the address")
    for param in split_list(text[1:], ";"):
        name = param.partition("=")[0].strip()
        if not name or not _TOKEN.fullmatch(name):
            raise SipParseError(f"{where}: empty or bad parameter in '{text[:60]}'")


def _body(message: Request | Response, body: bytes) -> bytes:
    declared = message.get("content-length")
    if not declared:
        if body.strip(b"\r\n"):
            raise SipParseError("a body without Content-Length")
        return b""
    if not (declared.isascii() and declared.isdigit()):
        raise SipParseError(f"Content-Length '{declared[:20]}' is not a number of bytes")
    length = int(declared)
    if length > len(body):
        raise SipParseError(f"Content-Length {length} but only {len(body)} bytes follow")
    return body[:length]
