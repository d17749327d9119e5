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
  X-Trunkplane-Trunk-Id, X-Trunkplane-Destination: the inbound route's destination.

The parts: pbx_face (calls from a PBX out through trunks), provider_face (calls from a
provider in to the PBX), dialogs (the legs, transactions, in-dialog relaying, records and
the guard, which both faces share); this module opens the listeners and dispatches."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

from sipagent.calls.dialogs import log, malformed, reply_to
from sipagent.calls.pbx_face import PbxFace
from sipagent.calls.provider_face import ProviderFace
from sipagent.calls.transactions import Face, ServerTx, spawn
from sipagent.calls.uri import branch_of, tag_of
from sipagent.sip.message import Request, Response
from sipagent.sip.transport import Destination, SipTransport


class B2BUA(PbxFace, ProviderFace):
    """Both faces on their listeners, and what arrives on them dispatched."""

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
                        reply_to(message, 500, "Server Internal Error", "").to_bytes(), source,
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
        self.late_response(tx, call, response)
        return True

    def _on_request(self, face: Face, request: Request, source: Destination,
                    stream: object | None) -> bool:
        problem = malformed(request)
        if problem:
            if request.method != "ACK":
                face.transport._send_to(reply_to(request, 400, f"Bad Request - {problem}",
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
                tx.respond(reply_to(request, 481, "Call/Transaction Does Not Exist", ""))
                return True
            self._remember(tx, None)
            self._in_dialog(dialog[0], dialog[1], request, tx)
            return True
        if request.method != "INVITE":
            return False  # OPTIONS out of dialog: 200; others: 405 (the transport's answers)
        self._remember(tx, None)
        tx.respond(reply_to(request, 100, "Trying", ""))
        coroutine = self._outbound(tx) if face.name == "pbx" else self._inbound(tx)
        spawn(self._guarded(coroutine, tx))
        return True
