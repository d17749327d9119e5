"""Locating SIP servers (RFC 3263): where a trunk's requests go, and in which order.

- An IP address: that address, the port written or the transport's default.
- A name with a port: its A (and, from an IPv6 socket, AAAA) records, that port.
- A name without a port: NAPTR records naming the trunk's transport (SIP+D2U, SIP+D2T,
  SIPS+D2T) give the SRV name, else `_sip._udp`, `_sip._tcp` or `_sips._tcp` before the
  name; SRV targets by priority, weighted at random within one (RFC 2782), each target's
  addresses in turn; no SRV record: the name's own addresses on the default port.

Every answer is kept for its TTL (one query per name and type while it lasts, however many
trunks ask, queries already under way shared); a name that does not exist, or has no
record of a type, is remembered for the zone's negative TTL (RFC 2308). Every address is
checked against TRUNKPLANE_SIP_DESTINATIONS; those outside are left out. dnspython's
asyncio resolver asks the configured servers (TRUNKPLANE_SIP_RESOLVER) or resolv.conf's."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver
from dns.rdata import Rdata
from dns.rdtypes.IN.NAPTR import NAPTR
from dns.rdtypes.IN.SRV import SRV

from domain.values import parse_host_port
from sipagent.destinations import Destinations
from sipagent.sip.transport import Destination, TransportError

NAPTR_SERVICE = {"udp": "SIP+D2U", "tcp": "SIP+D2T", "tls": "SIPS+D2T"}
SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
NEGATIVE_TTL = 30  # a negative answer without an SOA to take its TTL from
MAX_NEGATIVE_TTL = 300
TIMEOUT = 2.0  # per resolver attempt; a resolver that never answers fails the lookup in 4 s
LITERALS = 10_000  # hosts given as IP addresses whose targets are kept


def default_port(transport: str) -> int:
    return 5061 if transport == "tls" else 5060


@dataclass(frozen=True)
class Target:
    """One place to send to, with what located it (for status and doctor)."""

    destination: Destination
    priority: int = 0
    name: str = ""  # the SRV target (or the name) whose address this is

    def __str__(self) -> str:
        named = f" ({self.name})" if self.name and self.name != self.destination.host else ""
        return f"{self.destination}{named}"


@dataclass(frozen=True)
class _Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, order=True)
class _Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str


Record = _Srv | _Naptr | str


class NoRecordsError(TransportError):
    """The name has no record that locates a server (no NAPTR/SRV and no address)."""


class ResolverDownError(TransportError):
    """The resolver did not answer (or refused): nothing is known about the name."""


def parse_resolver(text: str) -> tuple[tuple[str, int], ...]:
    """`ip[:port][,ip[:port]...]` (IPv6 as [addr]:port) -> servers; "" -> resolv.conf's.
    ValueError names the item that is wrong."""
    servers = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        where = parse_host_port(item)
        if not where.is_ip:
            raise ValueError(f"'{item}' is not an IP address[:port] of a DNS resolver")
        servers.append((where.host, where.port or 53))
    return tuple(servers)


class Locator:
    def __init__(self, resolver: Sequence[tuple[str, int]] = (),
                 allowed: Destinations | None = None, ipv6: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.allowed = allowed if allowed is not None else Destinations(anywhere=True)
        self.ipv6 = ipv6
        self.clock = clock
        self.servers = tuple(resolver)
        self.queries = 0  # DNS questions sent (the cache's misses)
        self.asked: dict[tuple[str, str], int] = {}  # per name and type
        self._cache: dict[tuple[str, str], tuple[float, list[Record]]] = {}
        self._flying: dict[tuple[str, str], asyncio.Future[list[Record]]] = {}
        self._resolver: dns.asyncresolver.Resolver | None = None
        # the targets of hosts given as IP addresses (they depend on nothing else, and
        # `allowed` is fixed): parsing the address three times a REGISTER was a tenth of
        # the SIP thread's work while a take-over registered 4,200 trunks
        self._literal: dict[tuple[str, str], list[Target]] = {}

    def resolver(self) -> dns.asyncresolver.Resolver:
        """Made on first use (reading resolv.conf then, not at import)."""
        if self._resolver is None:
            resolver = dns.asyncresolver.Resolver(configure=not self.servers)
            if self.servers:
                resolver.nameservers = [host for host, _ in self.servers]
                resolver.nameserver_ports = dict(self.servers)
            resolver.cache = None  # ours: it counts, and shares questions under way
            resolver.timeout, resolver.lifetime = TIMEOUT, 2 * TIMEOUT
            self._resolver = resolver
        return self._resolver

    def describe(self) -> str:
        if self.servers:
            return ",".join(f"{h}:{p}" for h, p in self.servers)
        if self._resolver is None:
            return "of /etc/resolv.conf"
        return "of /etc/resolv.conf (" + ",".join(str(n) for n in self._resolver.nameservers) + ")"

    # --- RFC 3263 ----------------------------------------------------------------------

    async def locate(self, host: str, transport: str) -> list[Target]:
        """Targets in the order to try them; TransportError when there is none."""
        known = self._literal.get((host, transport))
        if known is not None:
            return list(known)
        try:
            where = parse_host_port(host)
        except ValueError as error:
            raise TransportError(f"bad host '{host}': {error}") from None
        if where.is_ip:
            targets = self._allowed([Target(Destination(transport, where.host, where.port or
                                                        default_port(transport)))], host)
            if len(self._literal) < LITERALS:
                self._literal[(host, transport)] = targets
            return list(targets)
        if not self.allowed.resolves_names:
            raise TransportError(f"{where.host}: names are not resolved while "
                                 "TRUNKPLANE_SIP_DESTINATIONS restricts where SIP goes")
        if where.port is not None:
            addresses = await self.addresses(where.host)
            if not addresses:
                raise NoRecordsError(f"DNS: {where.host} has no address (A record)")
            return self._allowed(self._at(where.host, addresses, where.port, transport, 0),
                                 host)
        return self._allowed(await self._by_service(where.host, transport), host)

    async def _by_service(self, name: str, transport: str) -> list[Target]:
        srv_name = await self._naptr(name, transport) or f"{SRV_PREFIX[transport]}.{name}"
        records = [r for r in await self.lookup(srv_name, "SRV") if isinstance(r, _Srv)]
        if records and not (len(records) == 1 and records[0].target == "."):
            targets: list[Target] = []
            for srv in ordered(records):
                found = await self.addresses(srv.target)
                targets += self._at(srv.target, found, srv.port, transport, srv.priority,
                                    name)
            if not targets:
                raise NoRecordsError(f"DNS: the SRV targets of {srv_name} have no address")
            return targets
        addresses = await self.addresses(name)
        if not addresses:
            raise NoRecordsError(f"DNS: {name} has no SRV record ({srv_name}) and no address "
                            "(A record)")
        return self._at(name, addresses, default_port(transport), transport, 0)

    async def _naptr(self, name: str, transport: str) -> str:
        """The SRV name NAPTR gives for the transport (RFC 3263 4.1), or ""."""
        service = NAPTR_SERVICE[transport]
        records = [r for r in await self.lookup(name, "NAPTR") if isinstance(r, _Naptr)]
        for record in sorted(records):
            if record.flags.lower() == "s" and record.service.upper() == service:
                return record.replacement
        return ""

    async def addresses(self, name: str) -> list[str]:
        kinds = ("A", "AAAA") if self.ipv6 else ("A",)
        found: list[str] = []
        for kind in kinds:
            found += [str(r) for r in await self.lookup(name, kind)]
        return found

    @staticmethod
    def _at(name: str, addresses: list[str], port: int, transport: str, priority: int,
            domain: str = "") -> list[Target]:
        """`domain`: the name TLS certificates must carry (RFC 5922: the domain asked for,
        not the SRV target)."""
        return [Target(Destination(transport, a, port, server_name=domain or name),
                       priority, name) for a in addresses]

    def _allowed(self, targets: list[Target], host: str) -> list[Target]:
        kept = [t for t in targets if self.allowed.allows(t.destination.host)]
        if not kept:
            found = ", ".join(t.destination.host for t in targets)
            raise TransportError(f"{host}: {found} outside TRUNKPLANE_SIP_DESTINATIONS "
                                 f"({self.allowed})")
        return kept

    # --- the cache ---------------------------------------------------------------------

    async def lookup(self, name: str, kind: str) -> list[Record]:
        """The records of one name and type (empty: none), from the cache while their TTL
        lasts; one question at a time per name and type."""
        key = (name.lower().rstrip("."), kind)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        flying = self._flying.get(key)
        if flying is None:  # a task of its own: a waiter cancelled (a trunk stopped) must
            flying = asyncio.ensure_future(self._question(key))  # not cancel the others'
            flying.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._flying[key] = flying
        return await asyncio.shield(flying)

    async def _question(self, key: tuple[str, str]) -> list[Record]:
        try:
            records, ttl = await self._ask(*key)
            self._cache[key] = (self.clock() + ttl, records)
            return records
        finally:
            del self._flying[key]

    async def _ask(self, name: str, kind: str) -> tuple[list[Record], float]:
        self.queries += 1
        self.asked[(name, kind)] = self.asked.get((name, kind), 0) + 1
        try:
            resolver = self.resolver()
        except dns.resolver.NoResolverConfiguration:
            raise ResolverDownError("DNS: no resolver: /etc/resolv.conf names none and "
                                    "TRUNKPLANE_SIP_RESOLVER is not set") from None
        try:
            answer = await resolver.resolve(dns.name.from_text(name), kind, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as error:
            return [], _negative_ttl(error)
        except dns.resolver.NoNameservers as error:
            raise ResolverDownError(f"DNS: the resolver {self.describe()} refused or failed "
                               f"{name} {kind}: {error}") from None
        except dns.exception.Timeout:
            raise ResolverDownError(f"DNS: the resolver {self.describe()} did not answer "
                               f"({name} {kind})") from None
        except dns.exception.DNSException as error:
            raise ResolverDownError(f"DNS: {name} {kind}: {error}") from None
        assert answer.rrset is not None
        return [_record(r) for r in answer.rrset], float(answer.rrset.ttl)


def _record(rdata: Rdata) -> Record:
    if isinstance(rdata, SRV):
        return _Srv(rdata.priority, rdata.weight, rdata.port,
                    str(rdata.target).rstrip(".") or ".")
    if isinstance(rdata, NAPTR):
        return _Naptr(rdata.order, rdata.preference, rdata.flags.decode(),
                      rdata.service.decode(), str(rdata.replacement).rstrip("."))
    return str(rdata.to_text())


def _negative_ttl(error: dns.exception.DNSException) -> float:
    """RFC 2308: the SOA's minimum (or its TTL, if lower) from the negative answer."""
    response = None
    if isinstance(error, dns.resolver.NoAnswer):
        response = error.response()  # type: ignore[no-untyped-call]
    elif isinstance(error, dns.resolver.NXDOMAIN):
        responses = error.responses()  # type: ignore[no-untyped-call]
        response = next(iter(responses.values()), None) if responses else None
    if isinstance(response, dns.message.Message):
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                return float(min(rrset.ttl, rrset[0].minimum, MAX_NEGATIVE_TTL))
    return float(NEGATIVE_TTL)


def ordered(records: Sequence[_Srv]) -> list[_Srv]:
    """RFC 2782: lowest priority first; within one, picked at random in proportion to
    weight (weight 0 only when nothing else is left)."""
    out: list[_Srv] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority and r.target != "."]
        while group:
            weights = [r.weight for r in group]
            pick = random.choices(group, weights=weights)[0] if sum(weights) else group[0]
            group.remove(pick)
            out.append(pick)
    return out


def sticky(targets: list[Target], current: Destination | None) -> list[Target]:
    """The destination in use first, while it is among the targets of the best priority:
    a trunk keeps its server across refreshes (the weights spread trunks, not one trunk's
    requests), and goes back to a better priority as soon as that answers again."""
    if current is None or not targets:
        return targets
    best = targets[0].priority
    keep = [t for t in targets if t.destination == current and t.priority == best]
    return keep + [t for t in targets if t not in keep]
