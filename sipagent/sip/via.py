"""The top Via and symmetric response routing (RFC 3261 18.2.1, RFC 3581).

Server side: a request's top Via gets `received=` (the source address) when its sent-by
differs from it, and both `received=` and `rport=` (the source port) when the client
asked with an empty `rport`; every reply copies that Via, and the replies go back to the
source address and port, so a client behind NAT hears them. Client side: what came back
in the top Via of a response is how the other end sees us (our public mapping)."""

from __future__ import annotations

from sipagent.sip.message import Message, SipParseError, split_list

VIA_NAMES = ("via", "v")


def _top(message: Message) -> tuple[int, list[str]] | None:
    """(index of the first Via header, its comma-separated values)."""
    for index, (name, value) in enumerate(message.headers):
        if name.strip().lower() in VIA_NAMES:
            try:
                return index, split_list(value)
            except SipParseError:
                return None
    return None


def _params(via: str) -> tuple[str, list[tuple[str, str | None]]]:
    """(protocol and sent-by, parameters as (name, value or None)) of one Via value."""
    head, *params = via.split(";")
    out: list[tuple[str, str | None]] = []
    for param in params:
        name, equals, value = param.partition("=")
        out.append((name.strip(), value.strip() if equals else None))
    return head.strip(), out


def _sent_by_host(head: str) -> str:
    sent_by = head.split()[-1] if head.split() else ""
    if sent_by.startswith("["):
        return sent_by[1:sent_by.find("]")]
    return sent_by.split(":")[0]


def stamp_received(message: Message, host: str, port: int) -> int:
    """Fills in the top Via of a request that arrived from host:port (see the module);
    returns how many bytes that added."""
    found = _top(message)
    if found is None:
        return 0
    index, values = found
    before = len(message.headers[index][1])
    head, params = _params(values[0])
    names = [n.lower() for n, _ in params]
    asked = "rport" in names and dict((n.lower(), v) for n, v in params)["rport"] is None
    if not asked and _sent_by_host(head) == host:
        return 0
    kept = [(n, v) for n, v in params if n.lower() not in ("received", "rport") or
            (n.lower() == "rport" and not asked)]
    kept.append(("received", host))
    if asked:
        kept.append(("rport", str(port)))
    values[0] = head + "".join(f";{n}" if v is None else f";{n}={v}" for n, v in kept)
    message.headers[index] = (message.headers[index][0], ", ".join(values))
    return max(0, len(message.headers[index][1]) - before)


def reflected(message: Message) -> tuple[str, int] | None:
    """The address and port the answering side saw our request come from: `rport` of a
    response's top Via and `received` (absent when it equals the sent-by address, as
    Kamailio does); None when the port was not filled in."""
    found = _top(message)
    if found is None:
        return None
    head, params = _params(found[1][0])
    values = dict((n.lower(), v) for n, v in params)
    host, port = values.get("received") or _sent_by_host(head), values.get("rport")
    if not host or not port or not port.isascii() or not port.isdigit():
        return None
    return host.strip("[]"), int(port)
