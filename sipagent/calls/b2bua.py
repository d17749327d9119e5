"""The B2BUA: every call is two dialogs, one with the PBX and one with a provider, joined
by the agent. Signalling only: the SDP goes through (reduced to a trunk's codecs on the
way out), the media flows between the PBX and the provider directly.

Outbound (INVITE on the PBX face): the tenant by source address (and digest when the
tenant set credentials), the channel from the same `Admission` as gRPC leases, a new
INVITE to the chosen trunk (number after strip/prepend, From from the trunk, Contact and
Via with the external IP under NAT), 401/407 answered once, failover to the route's next
trunk on 408, 5xx, a transport error or no answer in time; other final answers go back
unchanged. Inbound (INVITE on the provider face): the trunk by the Contact it registered
(the `line` parameter) or a peer trunk by source address (else 403), the inbound route by
DID and caller ID, limits, then the tenant's PBX origination targets in priority order
with the headers below. In dialog: BYE, re-INVITE, UPDATE, INFO, OPTIONS are relayed with
each leg's own CSeq; the ACK of a 2xx end to end; CANCEL before the answer. A guard
probes established calls with in-dialog OPTIONS and ends calls past a maximum duration,
so a lost BYE never holds a channel.

Headers on INVITEs sent to the PBX (inbound calls):
  X-Trunkplane-DID: the number called, X-Trunkplane-Trunk: the trunk's name,
  X-Trunkplane-Trunk-Id, X-Trunkplane-Destination: the inbound route's destination."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import ssl
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from domain.calls import CallAttempt, CallRecord, CallRecordSink, PbxAccess, PbxDirectory
from domain.errors import NotFoundError
from sipagent.admission import INBOUND, OUTBOUND, Admission, Lease, RefusedError
from sipagent.calls.auth import DigestServer
from sipagent.calls.sdp import NoCommonCodecError, reduce_offer
from sipagent.calls.transactions import ClientTx, Face, ServerTx, cancel_of, spawn
from sipagent.calls.uri import branch_of, host_text, parse_uri, tag_of, uri_of, user_of
from sipagent.engine import resolve
from sipagent.settings import CallSettings, TrunkTimers
from sipagent.sip.digest import DigestClient, parse_challenge
from sipagent.sip.locate import Target
from sipagent.sip.message import Request, Response, SipParseError
from sipagent.sip.route import first_hop, proxy_route
from sipagent.sip.transport import (
    USER_AGENT,
    Destination,
    SipTransport,
    TransportError,
    new_branch,
    new_tag,
)

log = logging.getLogger(__name__)
DID_HEADER, TRUNK_HEADER = "X-Trunkplane-DID", "X-Trunkplane-Trunk"
TRUNK_ID_HEADER, DESTINATION_HEADER = "X-Trunkplane-Trunk-Id", "X-Trunkplane-Destination"
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


class ProviderSide:
    """What the B2BUA needs of the SIP engine (sipagent.engine.SipAgent implements it)."""

    transport: SipTransport | None

    async def resolve(self, host: str, transport: str) -> Destination:
        raise NotImplementedError

    async def locate(self, host: str, transport: str, trunk_id: str = "") -> list[Target]:
        raise NotImplementedError

    def trunk_for_line(self, line: str) -> tuple[str, str] | None:
        raise NotImplementedError

    def peer_destination(self, trunk_id: str) -> str | None:
        raise NotImplementedError

    def public_address(self, nat: dict[str, Any] | None, destination: Destination
                       ) -> tuple[str, int] | None:
        raise NotImplementedError

    def trunk_timers(self, trunk: dict[str, Any]) -> TrunkTimers:
        raise NotImplementedError


class B2BUA:
    def __init__(self, settings: CallSettings, admission: Admission, directory: PbxDirectory,
                 sink: CallRecordSink, provider: Any) -> None:
        self.settings = settings
        self.admission = admission
        self.directory = directory
        self.sink = sink
        self.provider = provider  # a SipAgent: transport, resolve(), trunk_for_line()
        self.counters = Counters()
        self.digest = DigestServer()
        self.pbx: Face | None = None
        self.faces: dict[str, Face] = {}
        self._servers: dict[tuple[str, str], tuple[ServerTx, Call | None]] = {}
        self._clients: dict[str, tuple[ClientTx, Call | None]] = {}
        self._dialogs: dict[tuple[str, str], tuple[Call, str]] = {}
        self.calls: set[Call] = set()
        self._guard: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._expiry: list[tuple[float, int, ServerTx | ClientTx]] = []
        self._sequence = 0

    # --- life cycle (on the engine's loop) ----------------------------------------------

    async def open(self) -> None:
        provider = self.provider.transport
        assert provider is not None, "start the SIP engine first"
        transport = SipTransport(self.settings.pbx_host, self.settings.pbx_port,
                                 t1=self.settings.t1, on_message=self._on_pbx)
        await transport.start()
        tls = None
        if self.settings.tls_cert and self.settings.tls_key:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
        tcp = self.settings.pbx_tcp_port
        if tcp is not None and self.settings.pbx_port == 0:
            tcp = 0
        await transport.listen_streams(tcp, self.settings.pbx_tls_port, tls)
        self.pbx = Face("pbx", transport)
        self.faces = {"pbx": self.pbx, "provider": Face("provider", provider)}
        provider.on_message = self._on_provider
        self._guard = asyncio.ensure_future(self._watch())
        self._sweeper = asyncio.ensure_future(self._sweeping())
        log.info("calls: PBX face on %s udp %d %s", self.settings.pbx_host,
                 transport.listen_port, transport.stream_ports)

    async def close(self) -> None:
        for task in (self._guard, self._sweeper):
            if task is not None:
                task.cancel()
        for call in list(self.calls):  # BYE sent, answers not awaited
            spawn(self._hang_up(call, "agent", "agent stopping"))
        await asyncio.sleep(0.05)
        for tx, _ in list(self._clients.values()):
            tx.stop()
        for server, _ in list(self._servers.values()):
            server.ack()
        if self.pbx is not None:
            self.pbx.transport.close()

    def active(self) -> int:
        return sum(1 for c in self.calls if c.state != "ended")

    # --- dispatch ------------------------------------------------------------------------

    def _on_pbx(self, message: Request | Response, source: Destination,
                stream: object | None) -> bool:
        assert self.pbx is not None
        return self._dispatch(self.pbx, message, source, stream)

    def _on_provider(self, message: Request | Response, source: Destination,
                     stream: object | None) -> bool:
        return self._dispatch(self.faces["provider"], message, source, stream)

    def _dispatch(self, face: Face, message: Request | Response, source: Destination,
                  stream: object | None) -> bool:
        try:
            if isinstance(message, Response):
                return self._on_response(message)
            return self._on_request(face, message, source, stream)
        except Exception:  # never let one message stop the agent
            log.exception("calls: a %s from %s failed", getattr(message, "method", "response"),
                          source)
            if isinstance(message, Request) and message.method != "ACK":
                with contextlib.suppress(Exception):
                    face.transport._send_to(
                        _reply(message, 500, "Server Internal Error", "").to_bytes(), source,
                        stream)  # type: ignore[arg-type]
            return True

    def _on_response(self, response: Response) -> bool:
        found = self._clients.get(branch_of(response.get("via")))
        if found is None:
            return False  # the engine's own REGISTER and OPTIONS
        tx, call = found
        if call is not None:
            call.last_seen = time.monotonic()
        tx.received(response)
        return True

    def _on_request(self, face: Face, request: Request, source: Destination,
                    stream: object | None) -> bool:
        problem = _malformed(request)
        if problem:
            if request.method != "ACK":
                face.transport._send_to(_reply(request, 400, f"Bad Request - {problem}",
                                               "").to_bytes(), source, stream)  # type: ignore[arg-type]
            return True
        branch = branch_of(request.get("via"))
        if request.method == "ACK":
            self._on_ack(request, branch)
            return True
        known = self._servers.get((branch, request.method))
        if known is not None:
            known[0].repeat()
            return True
        tx = ServerTx(face, request, source, stream, self.settings.t1)
        if request.method == "CANCEL":
            self._on_cancel(tx, branch)
            return True
        to_tag = tag_of(request.get("to"))
        if to_tag:
            dialog = self._dialogs.get((request.get("call-id"), to_tag))
            if dialog is None:
                if request.method == "OPTIONS":
                    return False
                tx.respond(_reply(request, 481, "Call/Transaction Does Not Exist", ""))
                return True
            self._remember(tx, None)
            self._in_dialog(dialog[0], dialog[1], request, tx)
            return True
        if request.method != "INVITE":
            return False  # OPTIONS out of dialog: 200; others: 405 (the transport's answers)
        self._remember(tx, None)
        tx.respond(_reply(request, 100, "Trying", ""))
        coroutine = self._outbound(tx) if face.name == "pbx" else self._inbound(tx)
        spawn(self._guarded(coroutine, tx))
        return True

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
                if found is not None and found[0] is tx:
                    del self._clients[tx.branch]

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
            tx.respond(_reply(tx.request, 500, "Server Internal Error", new_tag()))

    # --- outbound: PBX -> provider -------------------------------------------------------

    async def _outbound(self, tx: ServerTx) -> None:
        request = tx.request
        access = self.directory.pbx_for_source(tx.source.host)
        if access is None:
            self.counters.add("pbx_refused_source")
            tx.respond(_reply(request, 403, "Forbidden - source address not allowed",
                              new_tag()))
            return
        if access.needs_digest and not self._authorized(tx, access):
            return
        number = parse_uri(request.uri).user
        if not number:
            tx.respond(_reply(request, 400, "Bad Request - no number in the Request-URI",
                              new_tag()))
            return
        caller = user_of(request.get("from"))
        call = self._new_call(OUTBOUND, access.tenant, tx, number, caller)
        try:
            grant = self.admission.acquire(access.tenant, OUTBOUND, number, extension=caller,
                                           call_id=request.get("call-id"))
        except RefusedError as refusal:
            code, reason = REFUSALS.get(refusal.code, (503, "Service Unavailable"))
            self.counters.add(f"outbound_refused_{code}")
            self._fail(call, code, reason, str(refusal), "agent")
            return
        lease: Lease | None = grant.lease
        last: tuple[int, str] = (503, "Service Unavailable")
        while lease is not None:
            call.lease = lease
            code, reason = await self._try_trunk(call, lease)
            call.attempts.append(CallAttempt(lease.trunk_id, lease.trunk_name, code, reason))
            if call.state != "setup":
                return  # answered, or cancelled meanwhile
            last = (code or 503, reason) if code else (503, f"Service Unavailable - {reason}")
            if call.cancelled:
                self._release(call)
                return
            lease = self._next_trunk(call, lease, code)
            if code and not _failover(code):
                break
        self.counters.add("outbound_failed")
        self._fail(call, last[0], last[1], "", "provider" if call.attempts and
                   call.attempts[-1].code else "agent")

    def _authorized(self, tx: ServerTx, access: PbxAccess) -> bool:
        answer = tx.request.get("proxy-authorization")
        verdict = self.digest.check(answer, "INVITE", access.username,
                                    access.password) if answer else "none"
        if verdict == "ok":
            return True
        if verdict == "bad":  # a wrong answer is refused, not challenged again
            self.counters.add("pbx_auth_failed")
            tx.respond(_reply(tx.request, 403, "Forbidden - digest refused", new_tag()))
            return False
        reply = _reply(tx.request, 407, "Proxy Authentication Required", new_tag())
        reply.add("Proxy-Authenticate", self.digest.challenge(stale=verdict == "stale"))
        tx.respond(reply)
        return False

    def _next_trunk(self, call: Call, lease: Lease, code: int) -> Lease | None:
        """Releases the lease; the route's next trunk when the answer allows failover."""
        call.lease = None
        try:
            grant, _ = self.admission.report_failure(lease.lease_id, code or 503)
        except (NotFoundError, RefusedError):
            return None
        return grant.lease if grant is not None else None

    async def _try_trunk(self, call: Call, lease: Lease) -> tuple[int, str]:
        """One attempt on one trunk: (0, why) for a transport error or no answer, else the
        final code and reason (200: answered, the call is up)."""
        state = self.admission.state.tenant(call.tenant)
        trunk = state.trunks.get(lease.trunk_id) if state is not None else None
        if trunk is None:
            return 0, "trunk deleted"
        try:
            body = call.a_tx.request.body
            if body and "sdp" in call.a_tx.request.get("content-type").lower():
                body = reduce_offer(body, list(trunk.get("codecs") or []),
                                    trunk.get("dtmf_mode", "rfc2833") == "rfc2833")
        except NoCommonCodecError as error:
            return 488, f"Not Acceptable Here - {error}"
        except ValueError as error:
            return 400, f"Bad Request - {error}"
        host = str(trunk.get("host") or "") or self.provider.peer_destination(lease.trunk_id)
        transport = str(trunk.get("transport") or "udp")
        try:
            targets: list[Target] = await self.provider.locate(
                first_hop(trunk) or host or "", transport, lease.trunk_id)
        except TransportError as error:
            return 0, str(error)
        user = str(trunk.get("from_user") or trunk.get("username") or call.caller_received)
        domain = str(trunk.get("from_domain") or "") or _bare_host(host or "")
        call.number_sent, call.caller_sent, call.trunk_id = lease.dial_number, user, lease.trunk_id
        params = "" if transport == "udp" else f";transport={transport}"
        uri = f"sip:{lease.dial_number}@{host}{params}"
        face = self.faces["provider"]
        credentials = DigestClient(str(trunk.get("auth_id") or trunk.get("username") or ""),
                                   str(trunk.get("password") or ""))
        code, reason = 0, "no target"
        failover_after: float = self.provider.trunk_timers(trunk).failover_after
        for index, target in enumerate(targets):  # RFC 3263 4.3: the next after no answer
            public = self.provider.public_address(trunk.get("nat"), target.destination)
            leg = self._uac_leg(face, target.destination, f"<sip:{user}@{domain}>",
                                f"<sip:{lease.dial_number}@{domain}>", uri, user, public)
            call.b = leg
            # or a 503; a target with another after it has failover_after to answer at all
            timeout = self.settings.provider_timeout
            if index < len(targets) - 1:
                timeout = min(timeout, failover_after)
            code, reason = await self._run_invite(call, leg, uri, target.destination, body,
                                                  proxy_route(trunk), credentials, timeout)
            heard = call.b_tx is not None and call.b_tx.provisional
            if call.cancelled or not (code == 503 or (code == 0 and not heard)):
                break
        return code, reason

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
            response = await self._await_final(call, tx)
            if response is None:
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

    async def _await_final(self, call: Call, tx: ClientTx) -> Response | None:
        """Relays provisional answers to the caller; None: no answer in time (CANCELled
        when something had been heard)."""
        ringing_deadline: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            timeout = None if ringing_deadline is None else max(0.0, ringing_deadline -
                                                                 loop.time())
            try:
                response = await asyncio.wait_for(tx.responses.get(), timeout)
            except TimeoutError:
                self._cancel_b(call, tx)
                try:  # the 487 (or a late 2xx, then hung up) follows within a moment
                    late = await asyncio.wait_for(tx.responses.get(), 32 * self.settings.t1)
                except TimeoutError:
                    late = None
                if late is not None and 200 <= late.status < 300:
                    self._bye_unwanted(call, tx, late)
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
                self._bye_unwanted(call, tx, response)
                return Response(status=487, reason="Request Terminated")
            return response

    def _relay_provisional(self, call: Call, response: Response) -> None:
        reply = _reply(call.a_tx.request, response.status, response.reason, call.a.local_tag,
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
        reply = _reply(call.a_tx.request, 200, response.reason, call.a.local_tag,
                       contact=call.a.contact, body=response.body)
        _copy(response, reply)
        call.a_tx.respond(reply)
        tx.ack = b""  # the caller's ACK comes end to end

    # --- inbound: provider -> PBX --------------------------------------------------------

    async def _inbound(self, tx: ServerTx) -> None:
        request = tx.request
        found = self._trunk_of(request, tx.source)
        if found is None:
            self.counters.add("inbound_refused_source")
            tx.respond(_reply(request, 403, "Forbidden - unknown trunk or source address",
                              new_tag()))
            return
        tenant, trunk_id = found
        did = self._did(request, tenant, trunk_id)
        caller = user_of(request.get("from"))
        call = self._new_call(INBOUND, tenant, tx, did, caller)
        call.trunk_id = trunk_id
        self._behind_nat(call, tenant, trunk_id)
        try:
            grant = self.admission.acquire(tenant, INBOUND, did, did=did, trunk=trunk_id,
                                           call_id=request.get("call-id"), caller=caller)
        except RefusedError as refusal:
            code, reason = REFUSALS.get(refusal.code, (503, "Service Unavailable"))
            self.counters.add("inbound_no_route" if code == 404 else f"inbound_refused_{code}")
            self._fail(call, code, reason, str(refusal), "agent")
            return
        call.lease = grant.lease
        access = self.directory.pbx(tenant)
        targets = _ordered(access.targets) if access is not None else []
        if not targets:
            self.counters.add("inbound_no_pbx")
            self._fail(call, 503, "Service Unavailable", "no PBX origination target", "agent")
            return
        extra = [(DID_HEADER, did), (TRUNK_HEADER, grant.lease.trunk_name),
                 (TRUNK_ID_HEADER, trunk_id), (DESTINATION_HEADER, grant.lease.destination)]
        call.number_sent, call.caller_sent = did, caller
        last: tuple[int, str] = (503, "Service Unavailable")
        for target in targets:
            code, reason = await self._try_pbx(call, target, did, caller, extra)
            call.attempts.append(CallAttempt(trunk_id, grant.lease.trunk_name, code, reason))
            if call.state != "setup":
                return
            last = (code, reason) if code else (503, f"Service Unavailable - {reason}")
            if call.cancelled or (code and not _failover(code)):
                break
        self.counters.add("inbound_failed")
        self._fail(call, last[0], last[1], "", "pbx" if call.attempts and call.attempts[-1].code
                   else "agent")

    async def _try_pbx(self, call: Call, target: str, did: str, caller: str,
                       extra: list[tuple[str, str]]) -> tuple[int, str]:
        assert self.pbx is not None
        where = parse_uri(target)
        try:
            destination = await self._resolve(
                self.pbx, f"{host_text(where.host)}:{where.port or 5060}", where.transport)
        except TransportError as error:
            return 0, str(error)
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in where.params.items())
        # a target with a user part is called as it is (the DID is in To and the
        # header); without one, the DID becomes the user
        uri = target if where.user else f"sip:{did}@{where.hostport}{params}"
        host, _ = self.pbx.transport.local_address(destination)
        leg = self._uac_leg(self.pbx, destination, f"<sip:{caller}@{host_text(host)}>",
                            f"<sip:{did}@{where.hostport}>", uri, caller, None)
        call.b = leg
        return await self._run_invite(call, leg, uri, destination, call.a_tx.request.body,
                                      extra, None)

    def _behind_nat(self, call: Call, tenant: str, trunk_id: str) -> None:
        """An inbound call's provider leg under the trunk's NAT: our answers' Contact and
        our in-dialog requests' Via carry the public address, as on the trunk's REGISTER."""
        snapshot = self.admission.state.tenant(tenant)
        trunk = snapshot.trunks.get(trunk_id, {}) if snapshot is not None else {}
        public = self.provider.public_address(trunk.get("nat"), call.a_tx.source)
        if public is None:
            return
        call.a.nat_ip, call.a.nat_port = public
        params = "" if call.a.transport == "udp" else f";transport={call.a.transport}"
        call.a.contact = f"<sip:{host_text(public[0])}:{public[1]}{params}>"

    def _trunk_of(self, request: Request, source: Destination) -> tuple[str, str] | None:
        line = parse_uri(request.uri).params.get("line", "")
        if line:
            found = self.provider.trunk_for_line(line)
            if found is not None:
                return found  # type: ignore[no-any-return]
        state = self.admission.state
        peers = [(tenant, trunk_id, trunk) for tenant in state.tenants()
                 for snapshot in [state.tenant(tenant)] if snapshot is not None
                 for trunk_id, trunk in snapshot.trunks.items() if trunk.get("type") == "peer"]
        exact = f"{source.host}:{source.port}"
        for tenant, trunk_id, trunk in peers:  # the address and port first
            if exact in _peer_hosts(trunk, ports=True):
                return tenant, trunk_id
        for tenant, trunk_id, trunk in peers:  # then the address from any port
            if source.host in _peer_hosts(trunk):
                return tenant, trunk_id
        return None

    def _did(self, request: Request, tenant: str, trunk_id: str) -> str:
        """The number called: the Request-URI user, unless the provider sent the call to
        the Contact the trunk registered (then the To user, where providers keep it)."""
        uri_user = parse_uri(request.uri).user
        snapshot = self.admission.state.tenant(tenant)
        trunk = snapshot.trunks.get(trunk_id, {}) if snapshot is not None else {}
        if not uri_user or uri_user == trunk.get("username") or \
                parse_uri(request.uri).params.get("line"):
            return user_of(request.get("to")) or uri_user
        return uri_user

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
        reply = _reply(call.a_tx.request, code, phrase, call.a.local_tag)
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
            tx.respond(_reply(tx.request, 481, "Call/Transaction Does Not Exist", ""))
            return
        call = known[1]
        tx.respond(_reply(tx.request, 200, "OK", call.a.local_tag))
        if call.state != "setup" or call.cancelled:
            return
        call.cancelled = True
        self.counters.add(f"{call.direction}_cancelled")
        if call.b_tx is not None and call.b_tx.provisional:
            self._cancel_b(call, call.b_tx)
        self._fail(call, 487, "Request Terminated", "", "pbx" if call.direction == OUTBOUND
                   else "provider")

    def _cancel_b(self, call: Call, tx: ClientTx) -> None:
        if tx.final is not None or getattr(tx, "cancel_sent", False):
            return
        tx.cancel_sent = True  # type: ignore[attr-defined]
        cancel = cancel_of(tx.request)
        spawn(self._fire(call, None, cancel, tx.destination, tx.face))

    def _bye_unwanted(self, call: Call, tx: ClientTx, response: Response) -> None:
        """A 2xx that nobody wants any more (after CANCEL or a timeout): ACK, then BYE."""
        leg = call.b
        if leg is None:
            return
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
            tx.respond(_reply(request, 481 if request.method == "BYE" else 491,
                              "Call/Transaction Does Not Exist" if request.method == "BYE"
                              else "Request Pending", ""))
            return
        if request.method == "BYE":
            tx.respond(_reply(request, 200, "OK", ""))
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
            tx.respond(_reply(request, 200, "OK", ""))
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
            tx.respond(_reply(request, 503, "Service Unavailable", ""))
            return
        self._set_via(other, out, destination)
        client = self._start(other.face, out, destination, call, 64 * self.settings.t1)
        response = await self._await_plain(client)
        if response is None:
            tx.respond(_reply(request, 408, "Request Timeout", ""))
            return
        mine = call.leg(side)
        reply = _reply(request, response.status, response.reason, "",
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
            return await self.provider.resolve(host, transport)  # type: ignore[no-any-return]
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
        ignored), an INVITE after 64*T1 (Timer D: its final answer repeated is ACKed)."""
        if tx.invite and tx.final is not None:
            self._later(64 * self.settings.t1, tx)
        else:
            self._clients.pop(tx.branch, None)

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
            if call.lease is not None:
                with contextlib.suppress(NotFoundError):
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


def _reply(request: Request, status: int, reason: str, to_tag: str,
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


def _malformed(request: Request) -> str:
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


def _failover(code: int) -> bool:
    return code == 408 or 500 <= code < 600


def _max_forwards(request: Request) -> int:
    value = request.get("max-forwards")
    return max(0, min(70, int(value) - 1)) if value.isdigit() else 70


def _phrase(text: str) -> str:
    return "".join(c if c.isprintable() and c != '"' else " " for c in text)[:120]


def _bare_host(host: str) -> str:
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.split(":")[0]


def _peer_hosts(trunk: dict[str, Any], ports: bool = False) -> set[str]:
    """A peer trunk's addresses (with ports: `host:port`, 5060 when none is written)."""
    listed = [str(a) for a in trunk.get("peer_addresses") or []]
    if trunk.get("host"):
        listed.append(str(trunk["host"]))
    if not ports:
        return {_bare_host(a).strip("[]") for a in listed}
    out = set()
    for address in listed:
        host = _bare_host(address)
        rest = address[len(host):]
        out.add(f"{host.strip('[]')}:{rest[1:] if rest.startswith(':') else 5060}")
    return out


def _ordered(targets: tuple[Any, ...]) -> list[str]:
    """Lowest priority first; within a priority, a weighted random order."""
    out: list[str] = []
    for priority in sorted({t.priority for t in targets}):
        group = [t for t in targets if t.priority == priority]
        while group:
            pick = random.choices(group, weights=[max(1, t.weight) for t in group])[0]
            group.remove(pick)
            out.append(pick.uri)
    return out

