"""The agent's public address behind NAT, per trunk and destination.

A trunk with NAT on shows providers a public address in Contact and Via, except towards
destinations inside its `local_networks` (they reach the private address directly).
Where the public address comes from, first that applies:

1. the trunk's `external_ip` (with the agent's own port: forwarded as it is);
2. its `stun_server`: the mapping of the SIP UDP socket as that server sees it (RFC 5389),
   asked from the socket itself and refreshed every `stun_interval` (which also keeps the
   NAT's binding alive); a change is announced to whoever watches the server, and the
   register trunks re-register with the new Contact;
3. what the destination told us: `received` and `rport` in the top Via of its answers
   (RFC 3581), learned from every REGISTER and OPTIONS answer.

Over TCP and TLS only the address is taken from 2 and 3: the port of an outgoing
connection's mapping is not one anyone can connect to, so the listener's port stays."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sipagent.sip.message import Response
from sipagent.sip.stun import Mapping, StunError
from sipagent.sip.transport import Destination, SipTransport, TransportError
from sipagent.sip.via import reflected

log = logging.getLogger(__name__)
Address = tuple[str, int]
Resolver = Callable[[str, str], Awaitable[Destination]]
Listener = Callable[[Mapping | None, Mapping], None]


def rewrites(nat: dict[str, Any] | None, destination: str) -> bool:
    """Whether requests of a trunk with these NAT settings to `destination` (an IP
    address) carry the public address: NAT on and the destination outside its local
    networks."""
    if not nat or not nat.get("enabled"):
        return False
    try:
        address = ipaddress.ip_address(destination)
    except ValueError:
        return True
    for network in nat.get("local_networks") or ():
        try:
            if address in ipaddress.ip_network(str(network), strict=False):
                return False
        except ValueError:
            continue
    return True


def stun_server(nat: dict[str, Any] | None) -> str:
    """The STUN server a trunk's NAT settings ask the agent to use ('' for none: NAT off,
    or an external IP given)."""
    if not nat or not nat.get("enabled") or nat.get("external_ip"):
        return ""
    return str(nat.get("stun_server") or "")


@dataclass
class _Watch:
    """One STUN server, asked on an interval while some trunk uses it."""

    server: str
    mapping: Mapping | None = None
    error: str = ""
    listeners: set[Listener] = field(default_factory=set)
    first: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class PublicAddress:
    """The public mappings the agent knows: per STUN server, and per destination from
    rport. Lives on the engine's loop."""

    def __init__(self, transport: SipTransport, resolve: Resolver, interval: float,
                 timeout: float) -> None:
        self.transport = transport
        self.resolve = resolve
        self.interval = max(0.1, interval)  # 0 would ask without pause
        self.timeout = timeout
        self._watches: dict[str, _Watch] = {}
        self._reflected: dict[Address, Address] = {}
        self.queries = 0
        self.changes = 0

    # --- which address ------------------------------------------------------------------

    def for_trunk(self, nat: dict[str, Any] | None, destination: Destination
                  ) -> Address | None:
        """The (host, port) to show `destination` in Contact and Via; None: the local
        address (NAT off, a local network, or nothing learned yet)."""
        if not rewrites(nat, destination.host):
            return None
        assert nat is not None
        local_port = self.transport.listen_port
        if destination.transport != "udp":
            local_port = self.transport.stream_ports.get(destination.transport, local_port)
        if nat.get("external_ip"):
            return str(nat["external_ip"]), local_port
        learned: Address | None = None
        watch = self._watches.get(str(nat.get("stun_server") or ""))
        if watch is not None and watch.mapping is not None:
            learned = watch.mapping.host, watch.mapping.port
        if learned is None:
            learned = self._reflected.get((destination.host, destination.port))
        if learned is None:
            return None
        return learned if destination.transport == "udp" else (learned[0], local_port)

    def learn(self, destination: Destination, response: Response) -> None:
        """Keeps what the destination saw of us (received/rport of the answer's Via)."""
        seen = reflected(response)
        if seen is not None:
            self._reflected[(destination.host, destination.port)] = seen

    # --- STUN ---------------------------------------------------------------------------

    async def watch(self, server: str, listener: Listener) -> Mapping | None:
        """Starts asking `server` (once for all trunks using it), calls `listener` with
        (old, new) whenever the mapping changes, and returns the first answer (None if the
        server did not answer within the timeout)."""
        watch = self._watches.get(server)
        if watch is None:
            watch = self._watches[server] = _Watch(server)
            watch.task = asyncio.ensure_future(self._ask(watch))
        watch.listeners.add(listener)
        if not watch.first.is_set():
            await watch.first.wait()
        return watch.mapping

    def unwatch(self, server: str, listener: Listener) -> None:
        watch = self._watches.get(server)
        if watch is None:
            return
        watch.listeners.discard(listener)
        if not watch.listeners:
            if watch.task is not None:
                watch.task.cancel()
            del self._watches[server]

    def mapping(self, server: str) -> Mapping | None:
        watch = self._watches.get(server)
        return watch.mapping if watch is not None else None

    def close(self) -> None:
        for watch in list(self._watches.values()):
            if watch.task is not None:
                watch.task.cancel()
        self._watches.clear()

    async def _ask(self, watch: _Watch) -> None:
        while True:
            try:
                await self._ask_once(watch)
            except Exception:  # never leave the trunks waiting for a first answer
                log.exception("STUN %s: asking failed", watch.server)
            finally:
                watch.first.set()
            await asyncio.sleep(self.interval)

    async def _ask_once(self, watch: _Watch) -> None:
        self.queries += 1
        try:
            destination = await self.resolve(watch.server, "udp")
            found = await self.transport.stun_mapping(destination, self.timeout)
        except (TransportError, StunError) as error:
            if str(error) != watch.error:  # once per change of failure
                log.warning("STUN %s: %s; Contact and Via keep the last address known "
                            "(or rport's, or the local one)", watch.server, error)
            watch.error = str(error)
            return
        if watch.error:
            log.info("STUN %s answers again", watch.server)
        watch.error = ""
        old, watch.mapping = watch.mapping, found
        if old == found:
            return
        self.changes += 1
        log.info("STUN %s: public address %s%s", watch.server, found,
                 f" (was {old})" if old is not None else "")
        for listener in list(watch.listeners):
            try:
                listener(old, found)
            except Exception:  # one trunk's trouble is not the others'
                log.exception("STUN %s: a listener failed", watch.server)
