"""SIP transports and client transactions on asyncio (RFC 3261 sections 17.1.2 and 18).

- UDP: one socket for everything; non-INVITE client transactions retransmit on Timer E
  (T1 doubling up to T2) and give up on Timer F (64*T1, or the caller's shorter timeout).
- TCP and TLS: one connection per destination, reused, opened again when lost, framed by
  Content-Length, kept alive with CRLFCRLF (RFC 5626 3.5.1); no retransmissions.
- Responses find their transaction by the Via branch; every request gets a fresh branch.
- A small server side: OPTIONS is answered 200, other requests 405 or 481 as fits, and a
  malformed request 400; a malformed datagram is logged once per source and dropped.
- No amplification: a request without the headers a reply needs (Via, From, To, Call-ID,
  CSeq) gets no answer, and over UDP, where the source address may be forged, no answer
  is larger than the datagram that asked for it, but for the `received`/`rport` its Via
  gets (a few dozen bytes; optional headers go first, then the answer)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from domain.text import one_line
from sipagent.sip import stun
from sipagent.sip.message import Request, Response, SipParseError, frame_length, parse
from sipagent.sip.via import stamp_received

_T = TypeVar("_T")

log = logging.getLogger(__name__)
T1 = 0.5
T2 = 4.0
KEEPALIVE = 30.0
USER_AGENT = "trunkplane-agent"
REPLY_NEEDS = ("via", "from", "to", "call-id", "cseq")
COMPACT_NEEDED = {"v": "via", "f": "from", "t": "to", "i": "call-id"}
OPTIONAL_REPLY_HEADERS = ("server", "accept", "allow")  # dropped first to fit a datagram


# (message, where from, the connection it came on or None) -> True when it was handled
MessageHook = Callable[["Request | Response", "Destination", "_Stream | None"], bool]


class TransportError(OSError):
    """The request could not be sent or no response came: the destination is unreachable."""


@dataclass(frozen=True)
class Destination:
    transport: str  # udp | tcp | tls
    host: str  # an IP address
    port: int
    server_name: str = ""  # TLS: the name the certificate must carry
    # TLS: whose client certificate the connection presents (a trunk's id; see
    # SipTransport.set_client_context); connections of different ones are not shared
    client: str = ""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def new_branch() -> str:
    return "z9hG4bK" + os.urandom(10).hex()


def new_tag() -> str:
    return os.urandom(6).hex()


class _Stream:
    """One TCP or TLS connection with its read loop."""

    def __init__(self, layer: SipTransport, destination: Destination,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.layer = layer
        self.destination = destination
        self.reader = reader
        self.writer = writer
        self.closed = False
        self.why = ""  # what ended the connection, when it failed (a TLS alert, a reset)
        # None when the peer closed it during the handshake (a TLS 1.3 server refusing our
        # client certificate does so right after): the read loop then says why, and closes
        local = writer.get_extra_info("sockname")
        self.local: tuple[str, int] = (str(local[0]), int(local[1])) if local else ("", 0)
        self._tasks = [asyncio.ensure_future(self._read()),
                       asyncio.ensure_future(self._keepalive())]

    async def _read(self) -> None:
        buffer = b""
        try:
            while True:
                chunk = await self.reader.read(65536)
                if not chunk:
                    break
                buffer += chunk
                while True:
                    try:
                        size = frame_length(buffer)
                    except SipParseError as error:
                        log.warning("closing %s: %s", self.destination, error)
                        return
                    if size is None:
                        break
                    frame, buffer = buffer[:size], buffer[size:]
                    if frame.strip(b"\r\n"):
                        self.layer.received(frame, self.destination, self)
        except (OSError, asyncio.IncompleteReadError) as error:
            self.why = (f"{error.reason}" if isinstance(error, ssl.SSLError) and error.reason
                        else str(error))
        finally:
            self.close()

    async def _keepalive(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.layer.keepalive)
            try:
                self.writer.write(b"\r\n\r\n")
                await self.writer.drain()
            except OSError:
                self.close()

    def send(self, data: bytes) -> None:
        if self.closed:
            raise TransportError(f"connection to {self.destination} closed")
        self.writer.write(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.layer.forget(self)
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        with contextlib.suppress(Exception):
            self.writer.close()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, layer: SipTransport) -> None:
        self.layer = layer

    def datagram_received(self, data: bytes, addr: tuple[str, int] | tuple[str, int, int, int]
                          ) -> None:
        if stun.is_stun(data):  # the answer to a Binding request sent from this socket
            self.layer.stun_received(data)
        elif data.strip(b"\r\n"):
            self.layer.received(data, Destination("udp", addr[0], addr[1]), None)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable surfaces here on Linux: a transaction will time out, or fail
        # faster when the destination is known.
        self.layer.icmp_error(exc)


class SipTransport:
    """Owns the sockets and the client transactions of one agent."""

    def __init__(self, listen_host: str = "127.0.0.1", listen_port: int = 0,
                 tls_context: ssl.SSLContext | None = None, t1: float = T1,
                 keepalive: float = KEEPALIVE,
                 on_request: Callable[[Request, Destination], Response | None] | None = None,
                 on_message: MessageHook | None = None) -> None:
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.tls_context = tls_context
        self._client_contexts: dict[str, ssl.SSLContext] = {}
        self.t1 = t1
        self.keepalive = keepalive
        self.on_request = on_request
        self.on_message = on_message  # the B2BUA: sees every message first
        self.on_malformed: Callable[[Destination], None] | None = None
        self._servers: list[asyncio.Server] = []
        self.stream_ports: dict[str, int] = {}  # tcp/tls -> the port listened on
        self._udp: asyncio.DatagramTransport | None = None
        self._streams: dict[Destination, _Stream] = {}
        self._connecting: dict[Destination, asyncio.Future[_Stream]] = {}
        self._pending: dict[str, asyncio.Future[Response]] = {}
        self._sent_on: dict[str, _Stream] = {}  # branch -> the connection it went on
        self._waiting: dict[str, tuple[str, int]] = {}  # UDP branch -> where it was sent
        self._bad_sources: set[str] = set()
        self._last_icmp: float = 0.0
        self._proceeding: set[str] = set()  # branches that had a provisional response
        self._stun: dict[bytes, asyncio.Future[bytes]] = {}  # transaction id -> its answer
        self.sent = 0
        self.retransmissions = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(self.listen_host, self.listen_port))
        self._udp = transport
        self.listen_port = transport.get_extra_info("sockname")[1]
        _receive_icmp_errors(transport.get_extra_info("socket"))
        _large_buffers(transport.get_extra_info("socket"))

    async def listen_streams(self, tcp_port: int | None, tls_port: int | None,
                             tls_server: ssl.SSLContext | None = None) -> None:
        """Accepts TCP (and TLS, with a server context) connections on the listen host;
        port 0 picks a free one (see stream_ports), None does not listen."""
        for kind, port, context in (("tcp", tcp_port, None), ("tls", tls_port, tls_server)):
            if port is None or (kind == "tls" and context is None):
                continue
            server = await asyncio.start_server(
                functools.partial(self._accepted, kind), self.listen_host, port, ssl=context)
            self._servers.append(server)
            self.stream_ports[kind] = int(server.sockets[0].getsockname()[1])

    def _accepted(self, kind: str, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        destination = Destination(kind, str(peer[0]), int(peer[1]))
        self._streams[destination] = _Stream(self, destination, reader, writer)

    async def send_to(self, data: bytes, destination: Destination, timeout: float = 5.0
                      ) -> None:
        """Sends one message as it is (the caller made its Via): over the connection to
        the destination (opened when needed) or as a datagram. Raises TransportError."""
        try:
            if destination.transport == "udp":
                assert self._udp is not None, "start() the transport first"
                self._datagram(data, destination)
            else:
                (await self._stream(destination, timeout)).send(data)
            self.sent += 1
        except OSError as error:
            if isinstance(error, TransportError):
                raise
            raise TransportError(f"{destination}: {error.strerror or error}") from None

    def _datagram(self, data: bytes, destination: Destination) -> None:
        """sendto, after taking any ICMP error pending on the socket: with IP_RECVERR the
        kernel would fail the next send, whatever its destination, with that error (and
        asyncio would drop the datagram); measured: every datagram sent right after one to
        a closed port was lost."""
        assert self._udp is not None, "start() the transport first"
        sock = self._udp.get_extra_info("socket")
        if sock is not None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.icmp_error(OSError("ICMP error pending"))
        self._udp.sendto(data, (destination.host, destination.port))

    def send_datagram(self, data: bytes, destination: Destination) -> None:
        """send_to for UDP without a coroutine (the hot path). Raises TransportError."""
        if self._udp is None or self._udp.is_closing():
            raise TransportError("the SIP socket is closed")
        try:
            self._datagram(data, destination)
        except OSError as error:
            raise TransportError(f"{destination}: {error.strerror or error}") from None
        self.sent += 1

    def close(self) -> None:
        for server in self._servers:
            server.close()
        for stream in list(self._streams.values()):
            stream.close()
        if self._udp is not None:
            self._udp.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(TransportError("agent stopping"))

    def local_address(self, destination: Destination) -> tuple[str, int]:
        """The address a peer reaches us at, for Via and Contact."""
        if destination.transport != "udp":
            stream = self._streams.get(destination)
            if stream is not None:
                return stream.local[0], int(stream.local[1])
        host = self.listen_host
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - learning the route's source address
            host = _source_address(destination.host)
        return host, self.listen_port

    # --- receiving -----------------------------------------------------------------------

    def received(self, data: bytes, source: Destination, stream: _Stream | None) -> None:
        try:
            message = parse(data)
        except SipParseError as error:
            key = f"{source.transport}:{source.host}"
            if key not in self._bad_sources:  # once per source, not a log flood
                self._bad_sources.add(key)
                log.warning("dropped a malformed SIP message from %s: %s", source,
                            one_line(str(error)))
            if self.on_malformed is not None:
                self.on_malformed(source)
            self._answer_malformed(data, source, stream, str(error))
            return
        allowance = len(data)
        if isinstance(message, Request):
            if not _addressable(message.headers):
                return  # nowhere to send a reply that the sender could match
            # over UDP no answer is larger than what asked for it, but for the source's own
            # address written into its Via (RFC 3261 18.2.1, RFC 3581)
            allowance += stamp_received(message, source.host, source.port)
        if self.on_message is not None and self.on_message(message, source, stream):
            return
        if isinstance(message, Response):
            branch = _branch(message.get("via"))
            future = self._pending.get(branch)
            if future is not None and not future.done() and message.status >= 200:
                future.set_result(message)
            elif future is not None and message.status < 200:
                self._provisional(branch)
            return
        reply = self._serve(message, source)
        if reply is not None:
            self._reply(reply, allowance, source, stream)

    def _reply(self, reply: Response, received: int, source: Destination,
               stream: _Stream | None) -> None:
        data = reply.to_bytes() if stream is not None else _fitted(reply, received)
        if data is not None:
            self._send_to(data, source, stream)

    def _provisional(self, branch: str) -> None:
        self._proceeding.add(branch)

    def _serve(self, request: Request, source: Destination) -> Response | None:
        if request.method == "ACK":
            return None
        if self.on_request is not None:
            custom = self.on_request(request, source)
            if custom is not None:
                return custom
        if request.method == "OPTIONS":
            reply = response_to(request, 200, "OK")
            reply.add("Allow", "OPTIONS")
            reply.add("Accept", "application/sdp")
            return reply
        if request.method in ("BYE", "CANCEL", "NOTIFY", "INFO", "UPDATE", "PRACK"):
            return response_to(request, 481, "Call/Transaction Does Not Exist")
        reply = response_to(request, 405, "Method Not Allowed")
        reply.add("Allow", "OPTIONS")
        return reply

    def _answer_malformed(self, data: bytes, source: Destination, stream: _Stream | None,
                          why: str) -> None:
        """A request we can still address (every header a reply needs) gets a 400 naming
        the problem; over UDP only if it is no larger than what came."""
        head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")
        if not head or head[0].startswith("SIP/") or len(head[0].split(" ")) < 2:
            return
        wanted = {"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"}
        headers = [(n.strip(), v.strip()) for n, _, v in (h.partition(":") for h in head[1:])
                   if n.strip().lower() in wanted]
        if not _addressable(headers):
            return
        detail = "".join(c for c in why if c.isascii() and c.isprintable())[:80]
        reply = Response(status=400, reason=f"Bad Request - {detail}", headers=headers)
        if stream is None and len(reply.to_bytes()) > len(data):
            reply.reason = "Bad Request"
        self._reply(reply, len(data), source, stream)

    def icmp_error(self, error: Exception) -> None:
        """An ICMP error came back. With IP_RECVERR the socket's error queue names the
        destination of each datagram refused: its transactions fail at once (a closed port
        answers in a millisecond, not after timer F's 32 s). Without it, the time of the
        error is all we know (see request)."""
        self._last_icmp = time.monotonic()
        refused = _queued_errors(self._udp.get_extra_info("socket") if self._udp else None)
        log.debug("ICMP error on the SIP socket: %s (from %s)", error, refused or "?")
        for branch, target in list(self._waiting.items()):
            future = self._pending.get(branch)
            if target in refused and future is not None and not future.done():
                future.set_exception(TransportError(
                    f"{target[0]}:{target[1]}: port unreachable (ICMP)"))

    # --- sending -------------------------------------------------------------------------

    def _send_to(self, data: bytes, destination: Destination, stream: _Stream | None) -> None:
        try:
            if stream is not None:
                stream.send(data)
            elif self._udp is not None:
                self._datagram(data, destination)
        except OSError as error:
            log.debug("could not answer %s: %s", destination, error)

    async def _stream(self, destination: Destination, timeout: float) -> _Stream:
        existing = self._streams.get(destination)
        if existing is not None and not existing.closed:
            return existing
        pending = self._connecting.get(destination)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Stream] = asyncio.get_running_loop().create_future()
        self._connecting[destination] = future
        try:
            context = self.tls_context if destination.transport == "tls" else None
            if destination.transport == "tls" and destination.client:
                context = self._client_contexts.get(destination.client)
                if context is None:
                    raise TransportError(f"no client certificate loaded for {destination}")
            if destination.transport == "tls" and context is None:
                context = ssl.create_default_context()
            async with asyncio.timeout(timeout):  # not wait_for: see _within
                reader, writer = await asyncio.open_connection(
                    destination.host, destination.port, ssl=context,
                    server_hostname=(destination.server_name or destination.host) if context
                    else None)
            stream = _Stream(self, destination, reader, writer)
            self._streams[destination] = stream
            future.set_result(stream)
            return stream
        except ssl.SSLError as error:
            failure = TransportError(f"TLS with {destination} failed: {error.reason or error}")
            future.set_exception(failure)
            raise failure from None
        except TransportError as error:
            future.set_exception(error)
            raise
        except (OSError, TimeoutError) as error:
            failure = TransportError(f"cannot connect to {destination}: "
                                     f"{error.strerror or 'timed out'}"
                                     if isinstance(error, OSError) and error.strerror else
                                     f"cannot connect to {destination}: timed out")
            future.set_exception(failure)
            raise failure from None
        finally:
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: waiters that left early log nothing
            self._connecting.pop(destination, None)

    def set_client_context(self, client: str, context: ssl.SSLContext | None) -> None:
        """The TLS context (with a client certificate) of connections made for `client`;
        None removes it. Open connections made with the old one close: the next request
        connects again and presents the new certificate."""
        if context is None:
            self._client_contexts.pop(client, None)
        else:
            self._client_contexts[client] = context
        for destination, stream in list(self._streams.items()):
            if destination.client == client:
                stream.close()

    def forget(self, stream: _Stream) -> None:
        if self._streams.get(stream.destination) is stream:
            del self._streams[stream.destination]
        failure = TransportError(f"connection to {stream.destination} closed"
                                 + (f": {stream.why}" if stream.why else ""))
        for branch, sent_on in list(self._sent_on.items()):
            future = self._pending.get(branch)
            if sent_on is stream and future is not None and not future.done():
                future.set_exception(failure)  # its answer can never come now

    async def request(self, request: Request, destination: Destination,
                      timeout: float | None = None,
                      sent_by: tuple[str, int] | None = None) -> Response:
        """Runs one non-INVITE client transaction; the request's top Via is filled in here
        with a fresh branch (and `sent_by`, the public address under NAT, when given).
        Raises TransportError on timeout or a transport failure."""
        timer_f = timeout if timeout is not None else 64 * self.t1
        deadline = time.monotonic() + timer_f
        stream = None
        if destination.transport != "udp":
            stream = await self._stream(destination, timer_f)
        host, port = sent_by or self.local_address(destination)
        branch = new_branch()
        via = (f"SIP/2.0/{destination.transport.upper()} {_host(host)}:{port};"
               f"branch={branch};rport")
        request.headers = [(n, v) for n, v in request.headers if n.lower() not in ("via", "v")]
        request.headers.insert(0, ("Via", via))
        data = request.to_bytes()
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[branch] = future
        if stream is None:
            self._waiting[branch] = (destination.host, destination.port)
        sent_at = time.monotonic()
        try:
            if stream is not None:
                self._sent_on[branch] = stream
                stream.send(data)
                self.sent += 1
                remaining = deadline - time.monotonic()
                return await _within(future, max(0.0, remaining))
            interval = self.t1
            while True:
                assert self._udp is not None, "start() the transport first"
                self._datagram(data, destination)
                self.sent += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                try:
                    return await _within(future, min(interval, remaining))
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
                    if self._last_icmp > sent_at and interval >= 2 * self.t1:
                        raise TransportError(f"{destination}: port unreachable (ICMP)") from None
                    self.retransmissions += 1
                    proceeding = branch in self._proceeding
                    interval = T2 if proceeding else min(interval * 2, T2)
        except TimeoutError:
            raise TransportError(f"no answer from {destination} within {timer_f:g} s") from None
        except OSError as error:
            if isinstance(error, TransportError):
                raise
            raise TransportError(f"{destination}: {error.strerror or error}") from None
        finally:
            self._pending.pop(branch, None)
            self._sent_on.pop(branch, None)
            self._waiting.pop(branch, None)
            self._proceeding.discard(branch)


    # --- STUN (RFC 5389) from the SIP socket --------------------------------------------

    async def stun_mapping(self, server: Destination, timeout: float = 3.0) -> stun.Mapping:
        """The public mapping of the UDP socket, as the STUN server `server` sees it: a
        Binding request retransmitted from T1 doubling (RFC 5389 7.2.1) until `timeout`.
        Raises TransportError without an answer, stun.StunError on a refusal."""
        assert self._udp is not None, "start() the transport first"
        transaction, data = stun.binding_request()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._stun[transaction] = future
        deadline = time.monotonic() + timeout
        interval = self.t1
        try:
            while True:
                try:
                    self._datagram(data, server)
                except OSError as error:
                    raise TransportError(f"STUN {server.host}:{server.port}: "
                                         f"{error.strerror or error}") from None
                remaining = deadline - time.monotonic()
                try:
                    answer = await _within(future, max(0.0, min(interval, remaining)))
                    return stun.parse_binding_response(answer)
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise TransportError(f"STUN {server.host}:{server.port}: no answer "
                                             f"within {timeout:g} s") from None
                    interval *= 2
        finally:
            self._stun.pop(transaction, None)

    def stun_received(self, data: bytes) -> None:
        future = self._stun.get(stun.transaction_of(data))
        if future is not None and not future.done():
            future.set_result(data)


async def _within(future: asyncio.Future[_T], timeout: float) -> _T:
    """`future`'s result within `timeout` seconds (else TimeoutError), the future left
    running. Not asyncio.wait_for: on Python 3.11, a caller cancelled in the loop turn the
    result arrives got the result and lost the cancellation (a trunk's worker, stopped for
    a password change as its REGISTER was answered, went on with the old password for ever,
    and the new worker waiting for it never started)."""
    async with asyncio.timeout(timeout):
        return await asyncio.shield(future)


# Linux's values (<linux/in.h>, <linux/in6.h>); the socket module does not name them.
IP_RECVERR, IPV6_RECVERR, MSG_ERRQUEUE = 11, 25, 0x2000


def _receive_icmp_errors(sock: Any) -> None:
    """Linux reports ICMP errors of an unconnected UDP socket only with IP_RECVERR (then
    at once, and in the socket's error queue with the destination); elsewhere nothing."""
    if sock is None or sys.platform != "linux":
        return
    six = sock.family == socket.AF_INET6
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_IPV6 if six else socket.IPPROTO_IP,
                        IPV6_RECVERR if six else IP_RECVERR, 1)


def _queued_errors(sock: Any) -> set[tuple[str, int]]:
    """The destinations whose datagrams the error queue says were refused; drains it.
    (asyncio's socket wrapper has no recvmsg: read through a duplicate descriptor.)"""
    found: set[tuple[str, int]] = set()
    if sock is None or sys.platform != "linux":
        return found
    with socket.fromfd(sock.fileno(), sock.family, sock.type) as raw:
        for _ in range(1024):  # the queue is bounded by the receive buffer; so is this
            try:
                _, _, _, address = raw.recvmsg(1, 1024, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
            except OSError:  # BlockingIOError: the queue is empty
                break
            if address:
                found.add((str(address[0]), int(address[1])))
    return found


def response_to(request: Request, status: int, reason: str) -> Response:
    """A response carrying the request's Via, From, To (with a tag), Call-ID and CSeq."""
    headers = [(n, v) for n, v in request.headers
               if n.lower() in ("via", "v", "from", "f", "call-id", "i", "cseq")]
    to = request.get("to")
    if to and ";tag=" not in to:
        to = f"{to};tag={new_tag()}"
    headers.append(("To", to))
    headers.append(("Server", USER_AGENT))
    return Response(status=status, reason=reason, headers=headers)


def _addressable(headers: list[tuple[str, str]]) -> bool:
    """Whether a request carries every header its reply must echo (RFC 3261 8.2.6.2)."""
    present = {COMPACT_NEEDED.get(n.strip().lower(), n.strip().lower())
               for n, v in headers if v.strip()}
    return all(name in present for name in REPLY_NEEDS)


def _fitted(reply: Response, limit: int) -> bytes | None:
    """The reply in at most `limit` bytes, dropping optional headers as needed; None when
    even the bare reply is larger (then nothing is sent)."""
    data = reply.to_bytes()
    for name in OPTIONAL_REPLY_HEADERS:
        if len(data) <= limit:
            break
        reply.headers = [(n, v) for n, v in reply.headers if n.lower() != name]
        data = reply.to_bytes()
    return data if len(data) <= limit else None


def _branch(via: str) -> str:
    for param in via.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "branch":
            return value.strip()
    return ""


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _source_address(target: str) -> str:
    """The local address the kernel routes `target` from (a UDP connect sends nothing)."""
    import socket

    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((target, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _large_buffers(sock: object) -> None:
    """Bursts of calls must not overflow the kernel's default 208 KiB socket buffer (a few
    hundred datagrams on loopback): ask for 4 MiB each way; the kernel caps it at
    net.core.rmem_max / wmem_max."""
    import socket

    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, option, 4 * 1024 * 1024)  # type: ignore[attr-defined]
