"""Dialog bookkeeping of the B2BUA (sipagent.calls.b2bua): a call's two legs, the
server and client transactions it remembers and forgets, the INVITE client side both
faces use (challenges answered once, provisional answers relayed, the answer joined),
the calls' life (creation, the end, the records), in-dialog requests relayed leg to leg
with their own CSeq, ACK and CANCEL, the requests built, and the guard."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from domain.calls import CallAttempt, CallRecord, CallRecordSink, PbxDirectory
from domain.errors import NotFoundError
from sipagent.admission import INBOUND, OUTBOUND, Admission, Lease, RefusedError
from sipagent.calls.auth import DigestServer
from sipagent.calls.transactions import ClientTx, Face, ServerTx, cancel_of, spawn
from sipagent.calls.uri import branch_of, host_text, parse_uri, tag_of, uri_of
from sipagent.engine import resolve
from sipagent.settings import CallSettings, TrunkTimers
from sipagent.sip.digest import DigestClient, parse_challenge
from sipagent.sip.locate import Target
from sipagent.sip.message import Request, Response, SipParseError
from sipagent.sip.transport import (
    USER_AGENT,
    Destination,
    SipTransport,
    TransportError,
    new_branch,
    new_tag,
)

log = logging.getLogger("sipagent.calls.b2bua")  # one logger for the B2BUA's parts
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
COPIED = ("content-type", "content-disposition", "event", "subscription-state",
          "session-expires", "min-se", "require", "supported", "allow", "accept",
          "reason", "p-asserted-identity", "privacy")
REFUSALS = {"PERMISSION_DENIED": (403, "Forbidden"), "NOT_FOUND": (404, "Not Found"),
            "RESOURCE_EXHAUSTED": (486, "Busy Here"),
            "FAILED_PRECONDITION": (503, "Service Unavailable"),
            "INVALID_ARGUMENT": (484, "Address Incomplete")}



@dataclass
class Leg:
    """One dialog of a call, from the agent's side."""

    face: Face
    call_id: str
    local: str  # our From/To value with our tag
    remote: str  # theirs (with their tag once known)
    target: str  # where in-dialog requests go (their Contact)
    transport: str  # udp | tcp | tls
    contact: str  # our Contact on this leg
    routes: list[str] = field(default_factory=list)
    cseq: int = 0
    destination: Destination | None = None  # the first hop of in-dialog requests
    nat_ip: str = ""  # the public address shown in Contact and Via under NAT
    nat_port: int = 0
    client: str = ""  # the trunk whose TLS connections (client certificate) the leg uses

    @property
    def local_tag(self) -> str:
        return tag_of(self.local)


@dataclass(eq=False)
class Call:
    direction: str
    tenant: str
    a: Leg  # the caller's leg (we are its UAS)
    a_tx: ServerTx
    number_received: str
    caller_received: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    answered_at: datetime | None = None
    b: Leg | None = None  # the callee's leg (we are its UAC)
    b_tx: ClientTx | None = None
    lease: Lease | None = None
    attempts: list[CallAttempt] = field(default_factory=list)
    number_sent: str = ""
    caller_sent: str = ""
    trunk_id: str = ""
    state: str = "setup"  # setup | up | ended
    cancelled: bool = False
    b_ack: bytes = b""  # our ACK of the callee's 2xx, repeated if the 2xx is
    b_ack_to: Destination | None = None
    reinvite_acks: dict[str, tuple[Leg, int]] = field(default_factory=dict)
    last_seen: float = field(default_factory=time.monotonic)
    up_since: float = 0.0
    branches: list[str] = field(default_factory=list)  # its client transactions
    task: asyncio.Task[None] | None = None

    def leg(self, side: str) -> Leg:
        leg = self.a if side == "a" else self.b
        assert leg is not None
        return leg


@dataclass
class Counters:
    calls: dict[str, int] = field(default_factory=dict)

    def add(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1



class ProviderSide(Protocol):
    """What the B2BUA needs of the SIP engine (sipagent.engine.SipAgent implements it)."""

    transport: SipTransport | None

    async def resolve(self, host: str, transport: str) -> Destination:
        ...

    async def locate(self, host: str, transport: str, trunk_id: str = "") -> list[Target]:
        ...

    def trunk_for_line(self, line: str) -> tuple[str, str] | None:
        ...

    def peer_destination(self, trunk_id: str) -> str | None:
        ...

    def public_address(self, nat: dict[str, Any] | None, destination: Destination
                       ) -> tuple[str, int] | None:
        ...

    def trunk_timers(self, trunk: dict[str, Any]) -> TrunkTimers:
        ...


class Dialogs:
    """The state every call shares and what both faces do with it."""

    def __init__(self, settings: CallSettings, admission: Admission, directory: PbxDirectory,
                 sink: CallRecordSink, provider: ProviderSide) -> None:
        self.settings = settings
        self.admission = admission
        self.directory = directory
        self.sink = sink
        self.provider = provider
        self.counters = Counters()
        self.digest = DigestServer()
        self.pbx: Face | None = None
        self.faces: dict[str, Face] = {}
        self._servers: dict[tuple[str, str], tuple[ServerTx, Call | None]] = {}
        self._clients: dict[str, tuple[ClientTx, Call | None]] = {}
        # INVITEs nobody waits for any more (given up, or left ringing): a late answer is
        # ACKed and hung up (RFC 3261 13.2.2.4, 15), a late provisional CANCELled
        self._abandoned: dict[str, Leg] = {}
        self._dialogs: dict[tuple[str, str], tuple[Call, str]] = {}
        self.calls: set[Call] = set()
        self._guard: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._expiry: list[tuple[float, int, ServerTx | ClientTx]] = []
        self._sequence = 0

    def _remember(self, tx: ServerTx, call: Call | None) -> None:
        self._servers[tx.key] = (tx, call)
        linger = 64 * self.settings.t1  # Timer J/H: absorbs retransmitted requests
        self._later(linger if tx.request.method != "INVITE" else linger + 1.0, tx)

    def _later(self, delay: float, tx: ServerTx | ClientTx) -> None:
        """Forgets a transaction after `delay`. One heap swept four times a second rather
        than a timer each: fewer long-lived objects (the GC's full passes stay short)."""
        self._sequence += 1
        heapq.heappush(self._expiry, (time.monotonic() + delay, self._sequence, tx))

    def _sweep(self) -> None:
        now = time.monotonic()
        while self._expiry and self._expiry[0][0] <= now:
            tx = heapq.heappop(self._expiry)[2]
            if isinstance(tx, ServerTx):
                self._forget_server(tx)
            else:
                found = self._clients.get(tx.branch)
                if found is not None and found[0] is tx and tx.forget_at <= now:
                    del self._clients[tx.branch]
                    self._abandoned.pop(tx.branch, None)

    async def _sweeping(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self._sweep()

    def _forget_server(self, tx: ServerTx) -> None:
        found = self._servers.get(tx.key)
        if found is None or found[0] is not tx:
            return
        call = found[1]
        if tx.request.method == "INVITE" and call is not None and call.state == "setup":
            self._later(self.settings.t1 * 8, tx)  # ringing: kept for CANCEL
            return
        del self._servers[tx.key]

    async def _guarded(self, coroutine: Coroutine[Any, Any, None], tx: ServerTx) -> None:
        try:
            await coroutine
        except Exception:
            log.exception("calls: setting up %s failed", tx.request.get("call-id"))
            tx.respond(reply_to(tx.request, 500, "Server Internal Error", new_tag()))

    # --- the INVITE client side (both faces) -------------------------------------------

    def _uac_leg(self, face: Face, destination: Destination, local: str, remote: str,
                 target: str, user: str, public: tuple[str, int] | None) -> Leg:
        host, _ = face.transport.local_address(destination)
        host, port = public or (host, face.port(destination.transport))
        params = "" if destination.transport == "udp" else f";transport={destination.transport}"
        contact = f"<sip:{user}@{host_text(host)}:{port}{params}>" if user else \
            f"<sip:{host_text(host)}:{port}{params}>"
        return Leg(face, f"{new_tag()}{new_tag()}@trunkplane", f"{local};tag={new_tag()}",
                   remote, target, destination.transport, contact, [], 0, destination,
                   *(public or ("", 0)), client=destination.client)

    async def _run_invite(self, call: Call, leg: Leg, uri: str, destination: Destination,
                          body: bytes, extra: list[tuple[str, str]],
                          credentials: DigestClient | None,
                          timeout: float | None = None) -> tuple[int, str]:
        """`timeout`: no response at all by then, the next target (None: the provider
        timeout)."""
        authorization: tuple[str, str] | None = None
        answered_challenge = False
        while True:
            headers = list(extra) + ([authorization] if authorization else [])
            request = self._request(leg, "INVITE", uri, headers, body,
                                    call.a_tx.request.get("content-type"), destination)
            request.set("Max-Forwards", str(_max_forwards(call.a_tx.request)))
            tx = self._start(leg.face, request, destination, call,
                             self.settings.provider_timeout if timeout is None else timeout)
            call.b_tx = tx
            response = await self._await_final(call, leg, tx)
            if response is None:
                self._abandon(call, leg, tx)
                return 0, f"no answer from {destination} in time"
            if response.status in (401, 407) and credentials is not None and \
                    not answered_challenge and credentials.username:
                header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
                try:
                    challenge = parse_challenge(response.get(header), response.status == 407)
                except SipParseError:
                    return response.status, response.reason
                answered_challenge = True
                authorization = (challenge.header,
                                 credentials.answer(challenge, "INVITE", uri))
                continue
            if response.status in (401, 407):
                return 403, "Forbidden - the provider refused the trunk's credentials"
            if 200 <= response.status < 300:
                self._answered(call, leg, tx, response)
                return 200, response.reason
            return response.status, response.reason

    async def _await_final(self, call: Call, leg: Leg, tx: ClientTx) -> Response | None:
        """Relays provisional answers to the caller; None: no answer in time (CANCELled
        when something had been heard)."""
        ringing_deadline: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            timeout = None if ringing_deadline is None else max(0.0, ringing_deadline -
                                                                 loop.time())
            try:  # not wait_for: see sipagent.sip.transport._within
                async with asyncio.timeout(timeout):
                    response = await tx.responses.get()
            except TimeoutError:
                self._cancel_b(call, tx)
                try:  # the 487 (or a late 2xx, then hung up) follows within a moment
                    async with asyncio.timeout(32 * self.settings.t1):
                        late = await tx.responses.get()
                except TimeoutError:
                    late = None
                if late is not None and 200 <= late.status < 300:
                    self._bye_unwanted(call, leg, tx, late)
                return None
            if response is None:
                return None
            if response.status < 200:
                if ringing_deadline is None:
                    ringing_deadline = loop.time() + self.settings.ring_timeout
                if call.cancelled:
                    self._cancel_b(call, tx)
                elif response.status > 100:
                    self._relay_provisional(call, response)
                continue
            if call.cancelled and 200 <= response.status < 300:
                self._bye_unwanted(call, leg, tx, response)
                return Response(status=487, reason="Request Terminated")
            return response

    def _abandon(self, call: Call, leg: Leg, tx: ClientTx) -> None:
        """The INVITE is left without a final answer (no answer by the timeout, the next
        target tried; or ringing too long, CANCELled): its transaction stays for 64*T1 more
        so that a late answer is not lost on a forgotten transaction, a confirmed call the
        far end would hold (and bill) with nobody to hang it up."""
        self._abandoned[tx.branch] = leg
        self._clients.setdefault(tx.branch, (tx, call))
        self._keep(tx)
        if tx.final is not None and not tx.responses.empty():  # the final answer (always
            self.late_response(tx, call, tx.final)  # the last queued) came but was not read

    def late_response(self, tx: ClientTx, call: Call | None, response: Response) -> None:
        """A response on an abandoned INVITE (the transaction has taken it): a 2xx is
        ACKed and hung up at once, a provisional CANCELled (the far end stops ringing); a
        failure was ACKed by the transaction."""
        leg = self._abandoned.get(tx.branch)
        if leg is None or (response.status >= 200 and tx.final is not response):
            return  # not abandoned, or a repeated final answer (the ACK is repeated)
        if response.status < 200:
            self._cancel_b(call, tx)
            return
        del self._abandoned[tx.branch]
        if response.status < 300:
            self.counters.add("late_answer_hung_up")
            log.info("calls: a late %d from %s on an abandoned INVITE of %s: ACK and BYE",
                     response.status, tx.destination, leg.call_id)
            self._bye_unwanted(call, leg, tx, response)

    def _relay_provisional(self, call: Call, response: Response) -> None:
        reply = reply_to(call.a_tx.request, response.status, response.reason, call.a.local_tag,
                       contact=call.a.contact, body=response.body)
        _copy(response, reply)
        call.a_tx.respond(reply)

    def _answered(self, call: Call, leg: Leg, tx: ClientTx, response: Response) -> None:
        leg.remote = response.get("to")
        leg.target = uri_of(response.get("contact")) or leg.target
        leg.routes = list(reversed(response.all("record-route")))
        leg.destination = None  # recomputed from the route set or the Contact
        call.state, call.up_since = "up", time.monotonic()
        call.answered_at = datetime.now(UTC)
        self._dialogs[(leg.call_id, leg.local_tag)] = (call, "b")
        self._dialogs[(call.a.call_id, call.a.local_tag)] = (call, "a")
        self.counters.add(f"{call.direction}_answered")
        reply = reply_to(call.a_tx.request, 200, response.reason, call.a.local_tag,
                       contact=call.a.contact, body=response.body)
        _copy(response, reply)
        call.a_tx.respond(reply)
        tx.ack = b""  # the caller's ACK comes end to end

    # --- calls: creation, the end, records -----------------------------------------------

    def _new_call(self, direction: str, tenant: str, tx: ServerTx, number: str,
                  caller: str) -> Call:
        request = tx.request
        host, _ = tx.face.transport.local_address(tx.source)
        port = tx.face.port(tx.source.transport)
        params = "" if tx.source.transport == "udp" else f";transport={tx.source.transport}"
        a = Leg(tx.face, request.get("call-id"), f"{request.get('to')};tag={new_tag()}",
                request.get("from"), uri_of(request.get("contact")), tx.source.transport,
                f"<sip:{host_text(host)}:{port}{params}>", list(request.all("record-route")),
                0, None)
        call = Call(direction, tenant, a, tx, number, caller)
        self._servers[tx.key] = (tx, call)
        self.calls.add(call)
        return call

    def _fail(self, call: Call, code: int, reason: str, detail: str, by: str) -> None:
        phrase = reason if not detail else f"{reason} - {_phrase(detail)}"
        reply = reply_to(call.a_tx.request, code, phrase, call.a.local_tag)
        if detail:
            reply.add("Warning", f'399 trunkplane "{_phrase(detail)}"')
        call.a_tx.respond(reply)
        self._release(call)
        self._end(call, code, phrase, by)

    def _release(self, call: Call) -> None:
        if call.lease is not None:
            self.admission.release(call.lease.lease_id)
            call.lease = None

    def _end(self, call: Call, code: int, reason: str, by: str) -> None:
        if call.state == "ended":
            return
        call.state = "ended"
        self._release(call)
        self.calls.discard(call)
        # the lingering transactions no longer hold the call (it is freed now, not after
        # 64*T1: fewer live objects for the GC to walk)
        server = self._servers.get(call.a_tx.key)
        if server is not None and server[0] is call.a_tx:
            self._servers[call.a_tx.key] = (call.a_tx, None)
        for branch in call.branches:
            client = self._clients.get(branch)
            if client is not None:
                self._clients[branch] = (client[0], None)
        for leg in (call.a, call.b):
            if leg is not None:
                self._dialogs.pop((leg.call_id, leg.local_tag), None)
        record = CallRecord(
            call_id=call.a.call_id, tenant=call.tenant, direction=call.direction,  # type: ignore[arg-type]
            agent_id=self.settings.agent_id, attempts=tuple(call.attempts),
            number_received=call.number_received, number_sent=call.number_sent,
            caller_received=call.caller_received, caller_sent=call.caller_sent,
            trunk_id=call.trunk_id, started_at=call.started_at, answered_at=call.answered_at,
            ended_at=datetime.now(UTC), final_code=code, final_reason=reason,
            hangup_by=by)  # type: ignore[arg-type]
        try:
            self.sink.record(record)
        except Exception:
            log.exception("calls: the call record of %s was not kept", call.a.call_id)

    async def _hang_up(self, call: Call, by: str, why: str) -> None:
        """Ends an established call from the agent's side: BYE on both legs."""
        if call.state != "up":
            return
        byes = [self._fire(call, leg, self._dialog_request(
            leg, "BYE", [("Reason", f'SIP;cause=200;text="{why}"')]))
            for leg in (call.a, call.b) if leg is not None]
        self._end(call, 200, why, by)
        await asyncio.gather(*byes, return_exceptions=True)

    # --- in dialog -----------------------------------------------------------------------

    def _on_ack(self, request: Request, branch: str) -> None:
        known = self._servers.get((branch, "INVITE"))
        if known is not None and known[0].final >= 300:
            known[0].ack()  # the ACK of our non-2xx answer
            return
        dialog = self._dialogs.get((request.get("call-id"), tag_of(request.get("to"))))
        if dialog is None:
            return
        call, side = dialog
        call.last_seen = time.monotonic()
        number = request.cseq()[0]
        if side == "a" and call.a_tx.request.cseq()[0] == number:
            call.a_tx.ack()
            self._ack_b(call, request)
            return
        pending = call.reinvite_acks.pop(f"{side}:{number}", None)
        if pending is not None:
            leg, cseq = pending
            ack = self._dialog_request(leg, "ACK", [], request.body,
                                       request.get("content-type"), cseq=cseq)
            spawn(self._send_ack(leg, ack))

    def _ack_b(self, call: Call, request: Request) -> None:
        leg, tx = call.b, call.b_tx
        if leg is None or tx is None or call.b_ack:
            return
        ack = self._dialog_request(leg, "ACK", [], request.body, request.get("content-type"),
                                   cseq=tx.request.cseq()[0])
        call.b_ack = ack.to_bytes()
        tx.ack = call.b_ack
        spawn(self._send_ack(leg, ack))

    async def _send_ack(self, leg: Leg, ack: Request) -> None:
        with contextlib.suppress(TransportError):
            destination = await self._next_hop(leg)
            self._set_via(leg, ack, destination)
            await leg.face.transport.send_to(ack.to_bytes(), destination)

    def _on_cancel(self, tx: ServerTx, branch: str) -> None:
        known = self._servers.get((branch, "INVITE"))
        if known is None or known[1] is None:
            tx.respond(reply_to(tx.request, 481, "Call/Transaction Does Not Exist", ""))
            return
        call = known[1]
        tx.respond(reply_to(tx.request, 200, "OK", call.a.local_tag))
        if call.state != "setup" or call.cancelled:
            return
        call.cancelled = True
        self.counters.add(f"{call.direction}_cancelled")
        if call.b_tx is not None and call.b_tx.provisional:
            self._cancel_b(call, call.b_tx)
        self._fail(call, 487, "Request Terminated", "", "pbx" if call.direction == OUTBOUND
                   else "provider")

    def _cancel_b(self, call: Call | None, tx: ClientTx) -> None:
        if tx.final is not None or getattr(tx, "cancel_sent", False):
            return
        tx.cancel_sent = True  # type: ignore[attr-defined]
        cancel = cancel_of(tx.request)
        spawn(self._fire(call, None, cancel, tx.destination, tx.face))

    def _bye_unwanted(self, call: Call | None, leg: Leg, tx: ClientTx, response: Response
                      ) -> None:
        """A 2xx that nobody wants any more (after CANCEL, a timeout, or another target's
        answer): ACK, then BYE on the dialog it made (`leg`, the attempt's own)."""
        leg.remote = response.get("to")
        leg.target = uri_of(response.get("contact")) or leg.target
        leg.routes = list(reversed(response.all("record-route")))
        leg.destination = None
        ack = self._dialog_request(leg, "ACK", [], cseq=tx.request.cseq()[0])
        tx.ack = b""

        async def finish() -> None:
            await self._send_ack(leg, ack)
            tx.ack = ack.to_bytes()
            await self._fire(call, leg, self._dialog_request(leg, "BYE", []))
        spawn(finish())

    def _in_dialog(self, call: Call, side: str, request: Request, tx: ServerTx) -> None:
        call.last_seen = time.monotonic()
        other_side = "b" if side == "a" else "a"
        if call.state != "up" or (other_side == "b" and call.b is None):
            tx.respond(reply_to(request, 481 if request.method == "BYE" else 491,
                              "Call/Transaction Does Not Exist" if request.method == "BYE"
                              else "Request Pending", ""))
            return
        if request.method == "BYE":
            tx.respond(reply_to(request, 200, "OK", ""))
            other = call.leg(other_side)
            spawn(self._fire(call, other, self._dialog_request(other, "BYE", [])))
            sides: dict[tuple[str, str], str] = {
                ("a", OUTBOUND): "pbx", ("b", OUTBOUND): "provider",
                ("a", INBOUND): "provider", ("b", INBOUND): "pbx"}
            who = sides[(side, call.direction)]
            self.counters.add(f"{call.direction}_completed")
            self._end(call, 200, "OK", who)
            return
        if request.method == "INFO" and self._drop_info(call, request):
            tx.respond(reply_to(request, 200, "OK", ""))
            return
        spawn(self._relay(call, side, other_side, request, tx))

    def _drop_info(self, call: Call, request: Request) -> bool:
        """DTMF as INFO goes to a provider only on a trunk whose DTMF mode is INFO."""
        if call.direction != OUTBOUND or "dtmf" not in request.get("content-type").lower():
            return False
        state = self.admission.state.tenant(call.tenant)
        trunk = state.trunks.get(call.trunk_id, {}) if state is not None else {}
        return str(trunk.get("dtmf_mode", "rfc2833")) != "info"

    async def _relay(self, call: Call, side: str, other_side: str, request: Request,
                     tx: ServerTx) -> None:
        other = call.leg(other_side)
        extra = [(n, v) for n, v in request.headers if n.lower() in COPIED and
                 n.lower() != "content-type"]
        out = self._dialog_request(other, request.method, extra, request.body,
                                   request.get("content-type"))
        try:
            destination = await self._next_hop(other)
        except TransportError:
            tx.respond(reply_to(request, 503, "Service Unavailable", ""))
            return
        self._set_via(other, out, destination)
        client = self._start(other.face, out, destination, call, 64 * self.settings.t1)
        response = await self._await_plain(client)
        if response is None:
            tx.respond(reply_to(request, 408, "Request Timeout", ""))
            return
        mine = call.leg(side)
        reply = reply_to(request, response.status, response.reason, "",
                       contact=mine.contact if request.method in ("INVITE", "UPDATE") and
                       response.status < 300 else None, body=response.body)
        _copy(response, reply)
        tx.respond(reply)
        if request.method == "INVITE" and 200 <= response.status < 300:
            call.reinvite_acks[f"{side}:{request.cseq()[0]}"] = (other, out.cseq()[0])

    async def _await_plain(self, tx: ClientTx) -> Response | None:
        while True:
            response = await tx.responses.get()
            if response is None or response.status >= 200:
                return response

    async def _fire(self, call: Call | None, leg: Leg | None, request: Request,
                    destination: Destination | None = None, face: Face | None = None
                    ) -> Response | None:
        """Sends a request (BYE, CANCEL, OPTIONS) and waits for its final answer."""
        try:
            if destination is None:
                assert leg is not None
                destination = await self._next_hop(leg)
                self._set_via(leg, request, destination)
        except TransportError:
            return None
        tx = self._start(face or (leg.face if leg else self.faces["provider"]), request,
                         destination, call, 64 * self.settings.t1)
        return await self._await_plain(tx)

    # --- building requests ---------------------------------------------------------------

    def _request(self, leg: Leg, method: str, uri: str, extra: list[tuple[str, str]],
                 body: bytes, content_type: str, destination: Destination) -> Request:
        leg.cseq += 1
        headers = [("Via", ""), ("Max-Forwards", "70"), ("From", leg.local),
                   ("To", leg.remote), ("Call-ID", leg.call_id),
                   ("CSeq", f"{leg.cseq} {method}"), ("Contact", leg.contact),
                   ("Allow", ALLOW), ("User-Agent", USER_AGENT), *extra]
        if body:
            headers.append(("Content-Type", content_type or "application/sdp"))
        request = Request(method=method, uri=uri, headers=headers, body=body)
        self._set_via(leg, request, destination)
        return request

    def _dialog_request(self, leg: Leg, method: str, extra: list[tuple[str, str]],
                        body: bytes = b"", content_type: str = "", cseq: int | None = None
                        ) -> Request:
        if cseq is None:
            leg.cseq += 1
            cseq = leg.cseq
        headers = [("Via", ""), ("Max-Forwards", "70")]
        headers += [("Route", r) for r in leg.routes]
        headers += [("From", leg.local), ("To", leg.remote), ("Call-ID", leg.call_id),
                    ("CSeq", f"{cseq} {method}")]
        if method not in ("BYE", "ACK", "CANCEL"):
            headers.append(("Contact", leg.contact))
        headers += extra
        if body:
            headers.append(("Content-Type", content_type or "application/sdp"))
        return Request(method=method, uri=leg.target, headers=headers, body=body)

    def _set_via(self, leg: Leg, request: Request, destination: Destination) -> None:
        host, _ = leg.face.transport.local_address(destination)
        port = leg.face.port(destination.transport)
        if leg.nat_ip:
            host, port = leg.nat_ip, leg.nat_port or port
        via = (f"SIP/2.0/{destination.transport.upper()} {host_text(host)}:"
               f"{port};branch={new_branch()};rport")
        request.headers = [(n, v) for n, v in request.headers if n.lower() not in ("via", "v")]
        request.headers.insert(0, ("Via", via))

    async def _next_hop(self, leg: Leg) -> Destination:
        if leg.destination is not None:
            return leg.destination
        first = uri_of(leg.routes[0]) if leg.routes else leg.target
        where = parse_uri(first)
        transport = where.transport if "transport" in where.params else leg.transport
        port = where.port or (5061 if transport == "tls" else 5060)
        destination = await self._resolve(leg.face, f"{host_text(where.host)}:{port}",
                                          transport)
        if leg.client and destination.transport == "tls":  # ACK, BYE, re-INVITE: the
            destination = replace(destination, client=leg.client)  # trunk's certificate too
        leg.destination = destination
        return destination

    async def _resolve(self, face: Face, host: str, transport: str) -> Destination:
        """Providers only where TRUNKPLANE_SIP_DESTINATIONS allows; the PBX (its Contact,
        its origination targets) wherever the tenant's PBX access says it is."""
        if face.name == "provider":
            return await self.provider.resolve(host, transport)
        return await resolve(host, transport, ())

    def _start(self, face: Face, request: Request, destination: Destination,
               call: Call | None, timeout: float) -> ClientTx:
        tx = ClientTx(face, request, destination, self.settings.t1, timeout,
                      on_final=self._client_done)
        self._clients[tx.branch] = (tx, call)
        if call is not None:
            call.branches.append(tx.branch)
        tx.start()
        return tx

    def _client_done(self, tx: ClientTx) -> None:
        """Answered or given up: a non-INVITE is forgotten at once (a repeated answer is
        ignored), an INVITE after 64*T1 (Timer D: its final answer repeated is ACKed; a
        given-up one's late answer is ACKed, and hung up if 2xx)."""
        if tx.invite:  # given up too: a late answer still finds it (see _abandon)
            self._keep(tx)
        else:
            self._clients.pop(tx.branch, None)

    def _keep(self, tx: ClientTx) -> None:
        """Forgets a client transaction 64*T1 from now (not before, if kept earlier)."""
        tx.forget_at = time.monotonic() + 64 * self.settings.t1
        self._later(64 * self.settings.t1, tx)

    # --- the guard -----------------------------------------------------------------------

    async def _watch(self) -> None:
        every = min(self.settings.probe_interval, 5.0)
        while True:
            await asyncio.sleep(every)
            try:
                await self._check_calls()
            except Exception:
                log.exception("calls: the guard's round failed")

    async def _check_calls(self) -> None:
        now = time.monotonic()
        for call in list(self.calls):
            if call.lease is not None:  # a lease gone, or its tenant being taken over
                # (UNAVAILABLE): the round goes on for the other calls
                with contextlib.suppress(NotFoundError, RefusedError):
                    self.admission.renew(call.lease.lease_id)
            if call.state != "up":
                continue
            if now - call.up_since > self.settings.max_duration:
                self.counters.add("guard_max_duration")
                await self._hang_up(call, "guard", "maximum call duration")
            elif now - call.last_seen > self.settings.probe_interval:
                spawn(self._probe(call))

    async def _probe(self, call: Call) -> None:
        call.last_seen = time.monotonic()  # one probe at a time
        for leg in (call.a, call.b):
            if leg is None or call.state != "up":
                continue
            answer = await self._fire(call, leg, self._dialog_request(leg, "OPTIONS", []))
            if answer is None or answer.status in (404, 408, 410, 416, 477, 480, 481, 503):
                self.counters.add("guard_probe_failed")
                await self._hang_up(call, "guard", "no sign of life in the dialog")
                return

    def run_guard_now(self) -> asyncio.Future[None]:
        """Tests: one round of the guard at once."""
        return spawn(self._check_calls())


# --- helpers -----------------------------------------------------------------------------


def reply_to(request: Request, status: int, reason: str, to_tag: str,
           contact: str | None = None, body: bytes = b"") -> Response:
    headers = [(n, v) for n, v in request.headers
               if n.lower() in ("via", "v", "from", "f", "call-id", "i", "cseq")]
    to = request.get("to")
    if to_tag and status > 100 and not tag_of(to):
        to = f"{to};tag={to_tag}"
    headers.append(("To", to))
    headers.append(("Server", USER_AGENT))
    if contact:  # a response that makes or refreshes a dialog (RFC 3261 12.1.1): the
        # Record-Route copied, in order, so the far side's in-dialog requests take the
        # proxies' path (behind NAT the direct one may well be filtered)
        headers += [(n, v) for n, v in request.headers if n.lower() == "record-route"]
        headers.append(("Contact", contact))
    return Response(status=status, reason=reason, headers=headers, body=body)


def _copy(source: Response, target: Response) -> None:
    for name, value in source.headers:
        if name.lower() in COPIED or name.lower() == "c":
            target.add(name, value)


def malformed(request: Request) -> str:
    """What makes a request unusable for a B2BUA (the parser took it), or ''."""
    for name in ("via", "from", "to", "call-id", "cseq"):
        if not request.get(name):
            return f"no {name} header"
    if not branch_of(request.get("via")):
        return "Via without branch"
    if request.method in ("INVITE", "BYE", "CANCEL", "ACK", "INFO", "UPDATE", "OPTIONS"):
        uri = parse_uri(request.uri)
        if uri.scheme not in ("sip", "sips") or not uri.host:
            return f"unsupported Request-URI {request.uri[:40]}"
    if request.method == "INVITE" and not tag_of(request.get("from")):
        return "From without tag"
    return ""


def fails_over(code: int) -> bool:
    return code == 408 or 500 <= code < 600


def _max_forwards(request: Request) -> int:
    value = request.get("max-forwards")
    return max(0, min(70, int(value) - 1)) if value.isdigit() else 70


def _phrase(text: str) -> str:
    return "".join(c if c.isprintable() and c != '"' else " " for c in text)[:120]


def bare_host(host: str) -> str:
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.split(":")[0]
