"""The PBX face of the B2BUA (sipagent.calls.b2bua): an INVITE from a PBX becomes a call
out through the tenant's trunks: the tenant by source address (and digest), a channel
from Admission, the INVITE to the trunk's RFC 3263 targets, failover to the route's next
trunk."""

from __future__ import annotations

from domain.calls import CallAttempt, PbxAccess
from domain.errors import NotFoundError
from sipagent.admission import OUTBOUND, Lease, RefusedError
from sipagent.calls.dialogs import REFUSALS, Call, Dialogs, bare_host, fails_over, reply_to
from sipagent.calls.sdp import NoCommonCodecError, reduce_offer
from sipagent.calls.transactions import ServerTx
from sipagent.calls.uri import parse_uri, user_of
from sipagent.sip.digest import DigestClient
from sipagent.sip.locate import Target
from sipagent.sip.route import first_hop, proxy_route
from sipagent.sip.transport import TransportError, new_tag


class PbxFace(Dialogs):
    # --- outbound: PBX -> provider -------------------------------------------------------

    async def _outbound(self, tx: ServerTx) -> None:
        request = tx.request
        access = self.directory.pbx_for_source(tx.source.host)
        if access is None:
            self.counters.add("pbx_refused_source")
            tx.respond(reply_to(request, 403, "Forbidden - source address not allowed",
                              new_tag()))
            return
        if access.needs_digest and not self._authorized(tx, access):
            return
        number = parse_uri(request.uri).user
        if not number:
            tx.respond(reply_to(request, 400, "Bad Request - no number in the Request-URI",
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
            if code and not fails_over(code):
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
            tx.respond(reply_to(tx.request, 403, "Forbidden - digest refused", new_tag()))
            return False
        reply = reply_to(tx.request, 407, "Proxy Authentication Required", new_tag())
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
        domain = str(trunk.get("from_domain") or "") or bare_host(host or "")
        call.number_sent, call.caller_sent, call.trunk_id = lease.dial_number, user, lease.trunk_id
        params = "" if transport == "udp" else f";transport={transport}"
        uri = f"sip:{lease.dial_number}@{host}{params}"
        face = self.faces["provider"]
        credentials = DigestClient(str(trunk.get("auth_id") or trunk.get("username") or ""),
                                   str(trunk.get("password") or ""))
        code, reason = 0, "no target"
        unavailable: tuple[int, str] | None = None  # the first 503, naming its target
        heard = False
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
            if code == 503 and unavailable is None:
                unavailable = (code, f"{reason} - from {target}")
            if call.cancelled or not (code == 503 or (code == 0 and not heard)):
                break
        if code == 0 and not heard and unavailable is not None and not call.cancelled:
            # a 503 then silence (or a transport error): the 503 says more (the record,
            # the PBX's answer), as the register status does
            return unavailable[0], f"{unavailable[1]}; the next: {reason}"
        return code, reason
