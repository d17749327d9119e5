"""Which tenant's PBX sends from an address: the most specific source network wins, as in a
routing table. The index keeps one dict per (IP version, prefix length), so a lookup costs
one probe per distinct prefix length in use, however many tenants and networks there are."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from domain.calls import PbxAccess, PbxTarget

Key = tuple[int, int]  # (IP version, prefix length)


def access_of(tenant: str, settings: Mapping[str, Any]) -> PbxAccess:
    """The agent's in-memory form of a tenant's PBX settings (targets in the stored order,
    which is the order to try: by priority)."""
    return PbxAccess(
        tenant=tenant, source_cidrs=tuple(settings["source_cidrs"]),
        username=str(settings["username"]), password=str(settings["password"]),
        targets=tuple(PbxTarget(str(t["uri"]), int(t["priority"]), int(t["weight"]))
                      for t in settings["targets"]))


class SourceIndex:
    def __init__(self, accesses: Iterable[PbxAccess]) -> None:
        self._tables: dict[Key, dict[int, list[PbxAccess]]] = {}
        for access in sorted(accesses, key=lambda a: a.tenant):
            for cidr in access.source_cidrs:
                network = ipaddress.ip_network(cidr)
                table = self._tables.setdefault((network.version, network.prefixlen), {})
                holders = table.setdefault(int(network.network_address), [])
                if access not in holders:
                    holders.append(access)
        # Longest prefix first: the first table that holds the address is the best match.
        self._order = sorted(self._tables, key=lambda k: -k[1])

    def candidates(self, address: str) -> list[PbxAccess]:
        """Every PBX whose networks hold the address, most specific network first (the
        tenants of equally specific networks in name order)."""
        found: list[PbxAccess] = []
        for holders in self._matches(address):
            found += [a for a in holders if a not in found]
        return found

    def best(self, address: str) -> PbxAccess | None:
        """The PBX of the most specific network holding the address; None when nobody's, or
        when two tenants list equally specific networks holding it: a call is never given to
        a tenant by guesswork."""
        for holders in self._matches(address):
            return holders[0] if len(holders) == 1 else None
        return None

    def _matches(self, address: str) -> Iterator[list[PbxAccess]]:
        """The holders of each network that contains the address, longest prefix first."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
        value, bits = int(ip), ip.max_prefixlen
        for version, length in self._order:
            if version == ip.version:
                holders = self._tables[(version, length)].get(value >> (bits - length)
                                                              << (bits - length))
                if holders:
                    yield holders
