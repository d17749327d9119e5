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


@dataclass
class ServerTx:
    face: Face
    request: Request
    source: Destination
    stream: object | None  # the connection it came on (TCP/TLS), None for UDP
    t1: float
    last: bytes = b""
    final: int = 0
    acked: bool = False
    _repeat: asyncio.Task[None] | None = None

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
                self._repeat = asyncio.ensure_future(self._until_ack())

    def repeat(self) -> None:
        """The request came again: the answer it has not seen, again."""
        if self.last:
            self._send()

    def ack(self) -> None:
        self.acked = True
        if self._repeat is not None:
            self._repeat.cancel()

    def _send(self) -> None:
        self.face.transport._send_to(self.last, self.source, self.stream)  # type: ignore[arg-type]

    async def _until_ack(self) -> None:
        interval = self.t1
        waited = 0.0
        while not self.acked and waited < 64 * self.t1:
            await asyncio.sleep(interval)
            waited += interval
            if not self.acked:
                self._send()
            interval = min(interval * 2, T2)


@dataclass
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
    _task: asyncio.Task[None] | None = None

    @property
    def branch(self) -> str:
        return branch_of(self.request.get("via"))

    @property
    def invite(self) -> bool:
        return self.request.method == "INVITE"

    def start(self, on_fail: Callable[[ClientTx], None] | None = None) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        data = self.request.to_bytes()
        try:
            await self.face.transport.send_to(data, self.destination)
        except TransportError as error:
            log.info("%s %s: %s", self.request.method, self.destination, error)
            self.responses.put_nowait(None)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        interval = self.t1
        while self.final is None and not (self.invite and self.provisional):
            left = deadline - loop.time()
            if left <= 0:
                self.responses.put_nowait(None)
                return
            await asyncio.sleep(min(interval, left) if self.destination.transport == "udp"
                                else left)
            if self.final is not None or (self.invite and self.provisional):
                return
            if self.destination.transport == "udp" and loop.time() < deadline:
                with contextlib.suppress(TransportError):
                    await self.face.transport.send_to(data, self.destination)
                interval = interval * 2 if self.invite else min(interval * 2, T2)

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
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.invite and response.status >= 300:
            self.ack = hop_ack(self.request, response).to_bytes()
            self._resend_ack()
        self.responses.put_nowait(response)

    def _resend_ack(self) -> None:
        spawn(self._send_quietly(self.ack))

    async def _send_quietly(self, data: bytes) -> None:
        with contextlib.suppress(TransportError):
            await self.face.transport.send_to(data, self.destination)

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


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
