"""A scripted SIP user agent on one UDP socket, for tests and the calls benchmark: as a
PBX it places calls (INVITE, ACK, BYE, CANCEL); as a provider it answers them as told
(ring and answer, a final code, ring forever, or nothing at all). It records every request
it receives, so a test asserts on what really arrived. Runs on a loop of its own thread
(`ThreadedUA`) or on the caller's loop (`ScriptedUA`, for the benchmark)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from sipagent.sip.message import Request, Response, SipParseError, parse

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0 8 18 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
       "a=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
       "a=fmtp:101 0-16\r\na=sendrecv\r\n")


T1 = 0.5


def sdp(port: int = 40000) -> bytes:
    return SDP.format(port=port).encode()


def _tag() -> str:
    return os.urandom(5).hex()


@dataclass
class Outcome:
    """A call placed by the UA: every response, and the dialog when answered."""

    call_id: str
    invite: Request
    responses: list[Response] = field(default_factory=list)
    final: Response | None = None
    sent_at: float = 0.0
    final_at: float = 0.0
    first_provisional_at: float = 0.0

    @property
    def code(self) -> int:
        return self.final.status if self.final else 0


class ScriptedUA(asyncio.DatagramProtocol):
    def __init__(self, answer: int | str = "answer", ring: bool = True) -> None:
        self.answer = answer  # "answer", "ring" (never answers), "silent", "late" (silent,
        # then a 200 after answer_delay), or a final code
        self.ring = ring
        self.requests: list[Request] = []
        self.port = 0
        self.dead = False  # True: ignores everything (a vanished far end)
        self.calls_up = 0
        self.max_up = 0
        self.answered = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._waiting: dict[str, asyncio.Queue[Response]] = {}
        self._pending: dict[str, Request] = {}  # call-id -> INVITE ringing here
        self.answer_delay = 0.0
        self.keep_responses = False
        self._last: dict[str, Response] = {}  # call-id -> last answer to its INVITE
        self._up: set[str] = set()
        self.responses: list[Response] = []
        self.unparsable = 0
        self._late: set[str] = set()  # call-ids whose late answer is on its way

    async def start(self, host: str = "127.0.0.1") -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self,
                                                           local_addr=(host, 0))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        sock = transport.get_extra_info("socket")
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, 4 * 1024 * 1024)
        return self.port

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- receiving -----------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.dead or not data.strip():
            return
        try:
            message = parse(data)
        except SipParseError:
            self.unparsable += 1
            return
        if isinstance(message, Response):
            if self.keep_responses:
                self.responses.append(message)
            queue = self._waiting.get(message.get("call-id"))
            if queue is not None:
                queue.put_nowait(message)
            return
        self.requests.append(message)
        self._serve(message, addr)

    def _serve(self, request: Request, addr: tuple[str, int]) -> None:
        method = request.method
        if method == "ACK":
            return
        if method == "INVITE" and ";tag=" not in request.get("to"):
            last = self._last.get(request.get("call-id"))
            if last is not None:  # a retransmission: the last answer again
                self._send(last, addr)
                return
            self._incoming(request, addr)
            return
        if method == "CANCEL":
            self._send(self._reply(request, 200, "OK"), addr)
            invite = self._pending.pop(request.get("call-id"), None)
            if invite is not None:
                self._send(self._reply(invite, 487, "Request Terminated", tag=True), addr)
            return
        if method == "BYE" and request.get("call-id") in self._up:
            self._up.discard(request.get("call-id"))
            self._last.pop(request.get("call-id"), None)
            self.calls_up = max(0, self.calls_up - 1)
        self._send(self._reply(request, 200, "OK", body=sdp(40002)
                               if method == "INVITE" else b""), addr)

    def _incoming(self, request: Request, addr: tuple[str, int]) -> None:
        if self.answer == "silent":
            return
        if self.answer == "late":  # nothing at all, then the 200 (once per call)
            if request.get("call-id") not in self._late:
                self._late.add(request.get("call-id"))
                asyncio.get_running_loop().call_later(
                    self.answer_delay, self._answer, request, addr, _tag())
            return
        self._send(self._reply(request, 100, "Trying"), addr)
        tag = _tag()
        if self.ring:
            self._send(self._reply(request, 180, "Ringing", tag=tag), addr)
        if self.answer == "ring":
            self._pending[request.get("call-id")] = request
            return
        if self.answer == "answer":
            if self.answer_delay:
                asyncio.get_running_loop().call_later(
                    self.answer_delay, self._answer, request, addr, tag)
            else:
                self._answer(request, addr, tag)
            return
        code = int(self.answer)
        self._send(self._reply(request, code, {486: "Busy Here", 503: "Service Unavailable",
                                               404: "Not Found"}.get(code, "Failed"),
                               tag=tag), addr)

    def _answer(self, request: Request, addr: tuple[str, int], tag: str) -> None:
        self._up.add(request.get("call-id"))
        self.calls_up += 1
        self.answered += 1
        self.max_up = max(self.max_up, self.calls_up)
        self._send(self._reply(request, 200, "OK", tag=tag, body=sdp(40002)), addr)

    def _reply(self, request: Request, status: int, reason: str, tag: bool | str = False,
               body: bytes = b"") -> Response:
        headers = [(n, v) for n, v in request.headers
                   if n.lower() in ("via", "from", "call-id", "cseq")]
        to = request.get("to")
        if tag and ";tag=" not in to:
            to = f"{to};tag={tag if isinstance(tag, str) else _tag()}"
        headers.append(("To", to))
        headers.append(("Contact", f"<sip:far@127.0.0.1:{self.port}>"))
        if body:
            headers.append(("Content-Type", "application/sdp"))
        return Response(status=status, reason=reason, headers=headers, body=body)

    def _send(self, message: Request | Response, addr: tuple[str, int]) -> None:
        assert self._transport is not None
        if isinstance(message, Response) and message.get("cseq").endswith("INVITE"):
            call_id = message.get("call-id")
            if message.status >= 200 and call_id not in self._up:
                self._last.pop(call_id, None)  # a failed call: forgotten
            else:
                self._last[call_id] = message
        self._transport.sendto(message.to_bytes(), addr)

    def send_raw(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self._transport is not None
        self._transport.sendto(data, addr)

    # --- placing calls -------------------------------------------------------------------

    async def call(self, target: tuple[str, int], number: str, caller: str = "201",
                   body: bytes | None = None, wait: float = 10.0,
                   extra: list[tuple[str, str]] | None = None) -> Outcome:
        call_id = f"{_tag()}{_tag()}@pbx"
        invite = self.invite(target, number, caller, call_id, body, extra)
        return await self.send_invite(target, invite, wait)

    def invite(self, target: tuple[str, int], number: str, caller: str, call_id: str,
               body: bytes | None = None, extra: list[tuple[str, str]] | None = None
               ) -> Request:
        host = f"{target[0]}:{target[1]}"
        payload = sdp() if body is None else body
        return Request(method="INVITE", uri=f"sip:{number}@{host}", headers=[
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{_tag()};rport"),
            ("Max-Forwards", "70"), ("From", f"<sip:{caller}@127.0.0.1>;tag={_tag()}"),
            ("To", f"<sip:{number}@{host}>"), ("Call-ID", call_id), ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:{caller}@127.0.0.1:{self.port}>"),
            *(extra or []), ("Content-Type", "application/sdp")], body=payload)

    async def send_invite(self, target: tuple[str, int], invite: Request,
                          wait: float = 10.0) -> Outcome:
        outcome = Outcome(invite.get("call-id"), invite, sent_at=time.perf_counter())
        queue: asyncio.Queue[Response] = asyncio.Queue()
        self._waiting[outcome.call_id] = queue
        self._send(invite, target)
        deadline = time.monotonic() + wait
        interval = T1
        while outcome.final is None:
            left = deadline - time.monotonic()
            try:
                response = await asyncio.wait_for(queue.get(), max(0.01, min(
                    left, interval) if not outcome.responses else left))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    break
                self._send(invite, target)  # Timer A: nothing heard yet
                interval *= 2
                continue
            if response.cseq()[1] != "INVITE":
                continue
            outcome.responses.append(response)
            if response.status >= 200:
                outcome.final, outcome.final_at = response, time.perf_counter()
            elif response.status > 100 and not outcome.first_provisional_at:
                outcome.first_provisional_at = time.perf_counter()
        if outcome.final is not None:
            self._ack(target, outcome)
        return outcome

    def _ack(self, target: tuple[str, int], outcome: Outcome) -> None:
        assert outcome.final is not None
        invite = outcome.invite
        via = invite.get("via") if outcome.final.status >= 300 else \
            f"SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{_tag()};rport"
        ack = Request(method="ACK", uri=invite.uri if outcome.final.status >= 300 else
                      _contact(outcome.final) or invite.uri, headers=[
                          ("Via", via), ("Max-Forwards", "70"), ("From", invite.get("from")),
                          ("To", outcome.final.get("to")), ("Call-ID", outcome.call_id),
                          ("CSeq", f"{invite.cseq()[0]} ACK")])
        self._send(ack, target)

    async def bye(self, target: tuple[str, int], outcome: Outcome, wait: float = 5.0
                  ) -> Response | None:
        return await self.in_dialog(target, outcome, "BYE", 2, wait)

    async def in_dialog(self, target: tuple[str, int], outcome: Outcome, method: str,
                        cseq: int, wait: float = 5.0, body: bytes = b"",
                        content_type: str = "") -> Response | None:
        assert outcome.final is not None
        invite = outcome.invite
        headers = [("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{_tag()};rport"),
                   ("Max-Forwards", "70"), ("From", invite.get("from")),
                   ("To", outcome.final.get("to")), ("Call-ID", outcome.call_id),
                   ("CSeq", f"{cseq} {method}")]
        if body:
            headers.append(("Content-Type", content_type))
        request = Request(method=method, uri=_contact(outcome.final) or invite.uri,
                          headers=headers, body=body)
        queue = self._waiting.setdefault(outcome.call_id, asyncio.Queue())
        self._send(request, target)
        deadline = time.monotonic() + wait
        interval = T1
        while True:
            left = deadline - time.monotonic()
            try:
                response = await asyncio.wait_for(queue.get(), max(0.01, min(left, interval)))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    return None
                self._send(request, target)  # Timer E
                interval = min(interval * 2, 4.0)
                continue
            if response.cseq()[1] == method and response.status >= 200:
                self._waiting.pop(outcome.call_id, None) if method == "BYE" else None
                return response

    async def cancel(self, target: tuple[str, int], invite: Request) -> None:
        cancel = Request(method="CANCEL", uri=invite.uri, headers=[
            ("Via", invite.get("via")), ("Max-Forwards", "70"), ("From", invite.get("from")),
            ("To", invite.get("to")), ("Call-ID", invite.get("call-id")),
            ("CSeq", f"{invite.cseq()[0]} CANCEL")])
        self._send(cancel, target)

    def received(self, method: str) -> list[Request]:
        return [r for r in self.requests if r.method == method]


def _contact(response: Response) -> str:
    value = response.get("contact")
    return value[value.find("<") + 1:value.find(">")] if "<" in value else value


class ThreadedUA:
    """A ScriptedUA on a loop of its own thread, driven from synchronous tests."""

    def __init__(self, answer: int | str = "answer", ring: bool = True) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.ua = ScriptedUA(answer, ring)
        self.port = self.run(self.ua.start())

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call_soon(self, function: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(function, *args)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.ua.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
