"""The provider face of the B2BUA (sipagent.calls.b2bua): an INVITE from a provider
becomes a call in to the tenant's PBX: the trunk by the Contact it registered or a peer's
address, the DID and the inbound route, limits, then the PBX origination targets in
priority order."""

from __future__ import annotations

import random
from typing import Any

from domain.calls import CallAttempt
from sipagent.admission import INBOUND, RefusedError
from sipagent.calls.dialogs import REFUSALS, Call, Dialogs, bare_host, fails_over, reply_to
from sipagent.calls.transactions import ServerTx
from sipagent.calls.uri import host_text, parse_uri, user_of
from sipagent.sip.message import Request
from sipagent.sip.transport import Destination, TransportError, new_tag

DID_HEADER, TRUNK_HEADER = "X-Trunkplane-DID", "X-Trunkplane-Trunk"
TRUNK_ID_HEADER, DESTINATION_HEADER = "X-Trunkplane-Trunk-Id", "X-Trunkplane-Destination"


class ProviderFace(Dialogs):
    # --- inbound: provider -> PBX --------------------------------------------------------

    async def _inbound(self, tx: ServerTx) -> None:
        request = tx.request
        found = self._trunk_of(request, tx.source)
        if found is None:
            self.counters.add("inbound_refused_source")
            tx.respond(reply_to(request, 403, "Forbidden - unknown trunk or source address",
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
            if call.cancelled or (code and not fails_over(code)):
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
                return found
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


def _peer_hosts(trunk: dict[str, Any], ports: bool = False) -> set[str]:
    """A peer trunk's addresses (with ports: `host:port`, 5060 when none is written)."""
    listed = [str(a) for a in trunk.get("peer_addresses") or []]
    if trunk.get("host"):
        listed.append(str(trunk["host"]))
    if not ports:
        return {bare_host(a).strip("[]") for a in listed}
    out = set()
    for address in listed:
        host = bare_host(address)
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
