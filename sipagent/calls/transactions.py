"""INVITE and non-INVITE transactions for the B2BUA (RFC 3261 17), on the agent's asyncio
loop. Client side: retransmissions on UDP (Timer A/E from T1, doubling, capped at T2 for
non-INVITE; INVITE stops at the first provisional), a timeout that stands for Timer B/F,
and the ACK of a non-2xx final answer sent hop by hop. Server side: the last response
repeated when a request is retransmitted, and a final answer to an INVITE repeated on UDP
until its ACK (Timer G/H)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sipagent.calls.uri import branch_of
from sipagent.sip.message import Request, Response
from sipagent.sip.transport import Destination, SipTransport, TransportError

log = logging.getLogger(__name__)
T2 = 4.0
_RUNNING: set[asyncio.Task[Any]] = set()


def spawn(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """A task kept referenced until it ends (asyncio holds only weak references)."""
    task = asyncio.ensure_future(coroutine)
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return task


@dataclass
class Face:
    """One side of the B2BUA: the PBX face or the provider face."""

    name: str  # pbx | provider
    transport: SipTransport

    def port(self, transport: str) -> int:
        if transport == "udp":
            return self.transport.listen_port
        return self.transport.stream_ports.get(transport, self.transport.listen_port)


@dataclass(eq=False)
class ServerTx:
    face: Face
    request: Request
    source: Destination
    stream: object | None  # the connection it came on (TCP/TLS), None for UDP
    t1: float
    last: bytes = b""
    final: int = 0
    acked: bool = False
    _timer: asyncio.TimerHandle | None = None  # plain timers, no task per transaction
    _interval: float = 0.0
    _waited: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return branch_of(self.request.get("via")), self.request.method

    def respond(self, response: Response) -> None:
        if self.final:
            return  # one final answer per transaction
        self.last = response.to_bytes()
        self._send()
        if response.status >= 200:
            self.final = response.status
            if self.request.method == "INVITE" and self.stream is None:
                self._interval = self.t1
                self._timer = asyncio.get_running_loop().call_later(self.t1, self._again)

    def repeat(self) -> None:
        """The request came again: the answer it has not seen, again."""
        if self.last:
            self._send()

    def ack(self) -> None:
        self.acked = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _send(self) -> None:
        self.face.transport._send_to(self.last, self.source, self.stream)  # type: ignore[arg-type]

    def _again(self) -> None:
        """Timer G: the final answer again until the ACK comes, for 64*T1 at most."""
        self._waited += self._interval
        if self.acked or self._waited >= 64 * self.t1:
            self._timer = None
            return
        self._send()
        self._interval = min(self._interval * 2, T2)
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._again)


@dataclass(eq=False)
class ClientTx:
    face: Face
    request: Request
    destination: Destination
    t1: float
    timeout: float  # no final (non-INVITE) or no response at all (INVITE) by then: None
    responses: asyncio.Queue[Response | None] = field(default_factory=asyncio.Queue)
    provisional: bool = False
    final: Response | None = None
    ack: bytes = b""  # sent again on every repeated final answer
    on_final: Callable[[ClientTx], None] | None = None
    forget_at: float = 0.0  # monotonic: the B2BUA forgets it then
    _timer: asyncio.TimerHandle | None = None
    _data: bytes = b""
    _interval: float = 0.0
    _deadline: float = 0.0

    @property
    def branch(self) -> str:
        return branch_of(self.request.get("via"))

    @property
    def invite(self) -> bool:
        return self.request.method == "INVITE"

    def start(self) -> None:
        self._data = self.request.to_bytes()
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.timeout
        self._interval = self.t1
        if self.destination.transport == "udp":
            try:
                self.face.transport.send_datagram(self._data, self.destination)
            except TransportError as error:
                self._failed(error)
                return
            self._timer = loop.call_later(self.t1, self._again)
        else:  # a connection may have to be opened first: a task, for streams only
            spawn(self._send_stream())

    async def _send_stream(self) -> None:
        try:
            await self.face.transport.send_to(self._data, self.destination)
        except TransportError as error:
            self._failed(error)
            return
        if self.final is None:
            self._timer = asyncio.get_running_loop().call_later(
                max(0.0, self._deadline - asyncio.get_running_loop().time()), self._again)

    def _failed(self, error: Exception) -> None:
        log.info("%s %s: %s", self.request.method, self.destination, error)
        self._give_up()

    def _give_up(self) -> None:
        self.responses.put_nowait(None)
        if self.on_final is not None:
            self.on_final(self)

    def _again(self) -> None:
        """Timer A/E (UDP retransmissions) and Timer B/F (the timeout)."""
        self._timer = None
        if self.final is not None or (self.invite and self.provisional):
            return
        loop = asyncio.get_running_loop()
        left = self._deadline - loop.time()
        if left <= 0.001:
            self._give_up()
            return
        if self.destination.transport == "udp":
            with contextlib.suppress(TransportError):
                self.face.transport.send_datagram(self._data, self.destination)
            self._interval = self._interval * 2 if self.invite else min(self._interval * 2, T2)
        self._timer = loop.call_later(min(self._interval, left), self._again)

    def received(self, response: Response) -> None:
        if response.status < 200:
            if self.final is None:
                self.provisional = True
                self.responses.put_nowait(response)
            return
        if self.final is not None:  # a repeated final answer: our ACK was lost
            if self.ack:
                self._resend_ack()
            return
        self.final = response
        self.stop()
        if self.invite and response.status >= 300:
            self.ack = hop_ack(self.request, response).to_bytes()
            self._resend_ack()
        self.responses.put_nowait(response)
        if self.on_final is not None:
            self.on_final(self)

    def _resend_ack(self) -> None:
        if self.destination.transport == "udp":
            with contextlib.suppress(TransportError):
                self.face.transport.send_datagram(self.ack, self.destination)
        else:
            spawn(self._send_quietly(self.ack))

    async def _send_quietly(self, data: bytes) -> None:
        with contextlib.suppress(TransportError):
            await self.face.transport.send_to(data, self.destination)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def hop_ack(invite: Request, response: Response) -> Request:
    """The ACK of a non-2xx final answer: the INVITE's Via, Request-URI, From, Call-ID and
    Route, the answer's To, CSeq number with ACK (RFC 3261 17.1.1.3)."""
    number = invite.cseq()[0]
    headers = [("Via", invite.get("via")), ("Max-Forwards", "70"),
               ("From", invite.get("from")), ("To", response.get("to")),
               ("Call-ID", invite.get("call-id")), ("CSeq", f"{number} ACK")]
    headers += [("Route", r) for r in invite.all("route")]
    return Request(method="ACK", uri=invite.uri, headers=headers)


def cancel_of(invite: Request) -> Request:
    number = invite.cseq()[0]
    headers = [("Via", invite.get("via")), ("Max-Forwards", "70"),
               ("From", invite.get("from")), ("To", invite.get("to")),
               ("Call-ID", invite.get("call-id")), ("CSeq", f"{number} CANCEL")]
    headers += [("Route", r) for r in invite.all("route")]
    return Request(method="CANCEL", uri=invite.uri, headers=headers)
