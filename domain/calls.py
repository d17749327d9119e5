"""Calls through the trunks (issue 12): the contract between the agent's B2BUA (sipagent,
issue 12a) and the control plane (12b: PBX-access events, call-record store, ListCalls).

- `PbxAccess`: one tenant's PBX, as the agent needs it in memory. `source_cidrs` are the
  addresses allowed to send calls on the PBX face; `username`/`password` (password in clear
  only in the agent's memory) are the digest credentials the PBX must answer when set
  (both blank: source address alone); `targets` are the origination URIs inbound calls go
  to, lowest `priority` first, `weight` choosing among equal priorities.
- `PbxDirectory`: what the B2BUA asks of the agent's state. 12b makes `AgentState`
  implement it (structurally: no import needed) from the PBX-access events; until then the
  tests pass a `StaticPbxDirectory`.
- `CallRecord`: one per call, written once when the call ends (or fails), to a
  `CallRecordSink`. `attempts` lists every trunk tried with its final answer, in order
  (code 0: a transport error or no answer in time; reason says which). Times are UTC.
  `hangup_by`: "pbx" or "provider" (who sent BYE/CANCEL, or whose final answer ended the
  call), "agent" (the agent refused or failed the call itself), "guard" (session timer,
  probe or maximum duration freed it), "" (unknown).
- `CallRecordSink.record` is called on the agent's SIP loop thread: it must not block for
  long (queue and write elsewhere).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Direction = Literal["outbound", "inbound"]
HangupBy = Literal["pbx", "provider", "agent", "guard", ""]


@dataclass(frozen=True)
class PbxTarget:
    uri: str  # e.g. sip:pbx.example.com:5060;transport=tcp
    priority: int = 10  # lower first
    weight: int = 1  # among equal priorities


@dataclass(frozen=True)
class PbxAccess:
    tenant: str
    source_cidrs: tuple[str, ...] = ()
    username: str = ""
    password: str = ""  # clear text only here, in the agent's memory
    targets: tuple[PbxTarget, ...] = ()

    def allows(self, address: str) -> bool:
        """True when `address` (an IP) is within one of the source CIDRs."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(c, strict=False) for c in self.source_cidrs)

    @property
    def needs_digest(self) -> bool:
        return bool(self.username)


class PbxDirectory(Protocol):
    """What the B2BUA reads from the agent's state (12b: AgentState implements it)."""

    def pbx_for_source(self, address: str) -> PbxAccess | None:
        """The tenant whose PBX may send calls from this IP address (None: nobody's)."""
        ...

    def pbx(self, tenant: str) -> PbxAccess | None:
        """A tenant's PBX access (None: not configured, or tenant not held here)."""
        ...


@dataclass
class StaticPbxDirectory:
    """A fixed directory: for tests, and for agents configured without events."""

    accesses: list[PbxAccess] = field(default_factory=list)

    def pbx_for_source(self, address: str) -> PbxAccess | None:
        return find_by_source(self.accesses, address)

    def pbx(self, tenant: str) -> PbxAccess | None:
        return next((a for a in self.accesses if a.tenant == tenant), None)


def find_by_source(accesses: Iterable[PbxAccess], address: str) -> PbxAccess | None:
    """The first access whose CIDRs hold `address`, the most specific CIDR winning."""
    best: tuple[int, PbxAccess] | None = None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    for access in accesses:
        for cidr in access.source_cidrs:
            network = ipaddress.ip_network(cidr, strict=False)
            if ip in network and (best is None or network.prefixlen > best[0]):
                best = (network.prefixlen, access)
    return best[1] if best else None


@dataclass(frozen=True)
class CallAttempt:
    trunk_id: str
    trunk_name: str
    code: int  # the final SIP answer on that trunk; 0: transport error or no answer
    reason: str


@dataclass(frozen=True)
class CallRecord:
    call_id: str  # the Call-ID on the PBX leg
    tenant: str
    direction: Direction
    agent_id: str
    attempts: tuple[CallAttempt, ...]
    number_received: str  # outbound: Request-URI user from the PBX; inbound: the DID
    number_sent: str  # outbound: after strip/prepend; inbound: the DID sent to the PBX
    caller_received: str  # From user as received
    caller_sent: str  # From user as sent
    trunk_id: str  # the trunk that carried (or last tried) the call; "" if none
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    final_code: int  # 200 for an answered call, else the final answer given
    final_reason: str
    hangup_by: HangupBy


class CallRecordSink(Protocol):
    def record(self, record: CallRecord) -> None: ...


@dataclass
class MemoryCallRecords:
    """Keeps records in a list: tests, and the agent before a real sink is wired."""

    records: list[CallRecord] = field(default_factory=list)

    def record(self, record: CallRecord) -> None:
        self.records.append(record)
