"""Where the agent may send SIP (TRUNKPLANE_SIP_DESTINATIONS).

Anyone who may edit a trunk chooses where the agent connects; without a limit a TCP peer
trunk tells open ports from closed ones on any host the agent can reach, the service's
own network included. So the operator chooses: a list of networks (host names are then not
resolved, since a name could point anywhere), `any`, or, until they choose, `public`:
globally routable addresses only, never loopback, private, link-local or cloud metadata
addresses."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PUBLIC, ANY = "public", "any"


@dataclass(frozen=True)
class Destinations:
    networks: tuple[Network, ...] = ()
    anywhere: bool = False

    @classmethod
    def parse(cls, text: str) -> Destinations:
        """`public` (also when empty), `any`, or comma-separated CIDRs; ValueError names
        the item that is none of these."""
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items or items == [PUBLIC]:
            return cls()
        if items == [ANY]:
            return cls(anywhere=True)
        networks: list[Network] = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"'{item}' is not a CIDR (or use '{PUBLIC}' or '{ANY}' "
                                 "alone)") from None
        return cls(tuple(networks))

    @property
    def resolves_names(self) -> bool:
        """With a list of networks names are not resolved (what they name can change)."""
        return not self.networks

    def allows(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        if self.anywhere:
            return True
        if self.networks:
            return any(ip in network for network in self.networks)
        return ip.is_global and not ip.is_multicast

    def __str__(self) -> str:
        if self.anywhere:
            return ANY
        if self.networks:
            return ",".join(str(n) for n in self.networks)
        return f"{PUBLIC} (globally routable addresses only)"
