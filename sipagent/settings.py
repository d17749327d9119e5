"""What an agent's SIP engine is told by its process: where to listen, its timers and
limits. The process settings (infra.config) build it from TRUNKPLANE_SIP_* variables."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SipSettings:
    agent_id: str = "agent"
    listen_host: str = "127.0.0.1"
    listen_port: int = 5062
    t1: float = 0.5
    register_expires: int = 3600
    options_interval: float = 30.0
    options_timeout: float = 3.0
    down_after: int = 2
    up_after: int = 1
    max_in_flight: int = 100
    startup_spread: float = 5.0  # initial registrations start at random within this
    backoff_base: float = 30.0
    backoff_max: float = 1800.0
    tls_ca: str = ""  # PEM file of CAs trusted for providers' TLS (default: the system's)
    # Where the agent may send SIP: CIDRs, or "any"; empty: public addresses only.
    destinations: tuple[str, ...] = ()
    tcp_port: int | None = None  # the provider face over TCP (None: no TCP listener)
    tls_port: int | None = None  # over TLS, with tls_cert and tls_key
    tls_cert: str = ""
    tls_key: str = ""
