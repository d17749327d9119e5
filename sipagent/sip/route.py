"""A trunk's first hop: its outbound proxy when it has one (RFC 3261 8.1.2 and 16.12:
the request keeps its Request-URI, goes to the proxy, and carries a Route header naming
the proxy with `lr`, so the proxy routes it on), else the trunk's host."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def first_hop(trunk: Mapping[str, Any]) -> str:
    """host[:port] the trunk's requests are sent to."""
    return str(trunk.get("outbound_proxy") or trunk.get("host") or "")


def proxy_route(trunk: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The Route header a request outside a dialog carries: none without a proxy."""
    proxy = str(trunk.get("outbound_proxy") or "")
    if not proxy:
        return []
    transport = str(trunk.get("transport") or "udp")
    params = "" if transport == "udp" else f";transport={transport}"
    return [("Route", f"<sip:{proxy}{params};lr>")]
