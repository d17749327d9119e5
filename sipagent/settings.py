"""What an agent's SIP engine is told by its process: where to listen, its timers and
limits. The process settings (infra.config) build it from TRUNKPLANE_SIP_* variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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
    # The DNS resolver(s) that locate providers (RFC 3263): `ip[:port],...`; "" reads
    # /etc/resolv.conf.
    resolver: str = ""
    tcp_port: int | None = None  # the provider face over TCP (None: no TCP listener)
    tls_port: int | None = None  # over TLS, with tls_cert and tls_key
    tls_cert: str = ""
    tls_key: str = ""
    stun_interval: float = 30.0  # seconds between STUN Binding requests to each server
    stun_timeout: float = 3.0  # the wait for a STUN answer (retransmitting from t1)
    # No answer from one of several RFC 3263 targets within this (REGISTER, OPTIONS; no
    # provisional answer to an INVITE): the next target. The last one gets Timer F/B.
    failover_after: float = 4.0


@dataclass(frozen=True)
class CallSettings:
    """The B2BUA (sipagent.calls): its PBX face and its call timers. The provider face is
    the SIP engine's listener (SipSettings: UDP and TCP on listen_port, TLS on tls_port)."""

    agent_id: str = "agent"
    pbx_host: str = "127.0.0.1"
    pbx_port: int = 5080  # UDP; TCP on the same number unless pbx_tcp_port says otherwise
    pbx_tcp_port: int | None = 5080  # None: no TCP
    pbx_tls_port: int | None = None  # needs tls_cert and tls_key
    tls_cert: str = ""
    tls_key: str = ""
    t1: float = 0.5
    provider_timeout: float = 8.0  # no response at all from a provider: the next trunk
    ring_timeout: float = 120.0  # ringing without an answer: CANCEL, the next trunk
    probe_interval: float = 30.0  # in-dialog OPTIONS on both legs of a quiet call
    max_duration: float = 4 * 3600.0  # a call is ended after this, whatever happens


@dataclass(frozen=True)
class TrunkTimers:
    """A trunk's timers as the engine runs them: the trunk's own where it set one, else
    the agent's (SipSettings)."""

    registration_expiry: int
    backoff_base: float
    backoff_cap: float
    qualify: bool
    options_interval: float
    down_after: int
    up_after: int
    ok_codes: tuple[str, ...]
    failover_after: float

    @classmethod
    def of(cls, agent: SipSettings, trunk: Mapping[str, Any]) -> TrunkTimers:
        own = trunk.get("timers") or {}

        def pick(name: str, fallback: Any) -> Any:
            value = own.get(name)
            return fallback if value is None else value

        return cls(
            registration_expiry=int(pick("registration_expiry", agent.register_expires)),
            backoff_base=float(pick("backoff_base", agent.backoff_base)),
            backoff_cap=float(pick("backoff_cap", agent.backoff_max)),
            qualify=bool(pick("qualify", True)),
            options_interval=float(pick("options_interval", agent.options_interval)),
            down_after=int(pick("down_after", agent.down_after)),
            up_after=int(pick("up_after", agent.up_after)),
            ok_codes=tuple(own.get("ok_codes") or ("2xx",)),
            failover_after=float(pick("failover_after", agent.failover_after)))

    def answer_ok(self, status: int) -> bool:
        """Whether an answer to OPTIONS means the provider is there (a code listed, or
        its class: 2xx)."""
        return str(status) in self.ok_codes or f"{status // 100}xx" in self.ok_codes
