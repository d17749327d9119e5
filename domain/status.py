"""What an agent observes about a trunk on the wire, and where it reports it. The agent
(sipagent) produces observations; the status view consumes them. In one process they go
straight to the view; in the distributed mode through the status topic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

# An agent's heartbeats (TRUNKPLANE_AGENT_HEARTBEAT), and how long its consumer group waits
# for a silent one before its partitions move (TRUNKPLANE_AGENT_SESSION_TIMEOUT).
HEARTBEAT_EVERY = 2.0
SESSION_TIMEOUT = 10.0


def silent_after(session_timeout: float = SESSION_TIMEOUT,
                 heartbeat_every: float = HEARTBEAT_EVERY) -> float:
    """Seconds without a heartbeat (on the reader's clock) after which an agent is silent.
    The one rule for both things that follow from it: the status view shows its trunks
    `unknown`, and its last reports are stale (TrunkStatus.stale). (They had a rule each,
    9 s and 30 s, and a trunk could read `unknown` yet not stale for 21 s.) A second within
    the agent group's session timeout, so the control planes say so before the partitions
    move; at least two heartbeats, so a live agent never looks silent."""
    return max(heartbeat_every * 2, session_timeout - 1)


# 9 s with the defaults: what a process without Kafka settings goes by (serve, whose
# embedded agent beats every HEARTBEAT_EVERY).
SILENT_AFTER = silent_after()


class TrunkState(StrEnum):
    REGISTERING = "registering"
    REGISTERED = "registered"  # every wanted registration is up
    AUTH_FAILED = "auth_failed"  # 401/407 after credentials were sent
    FORBIDDEN = "forbidden"  # 403: needs attention, retried only on the long back-off
    OK = "ok"  # a peer trunk with at least one address answering OPTIONS
    REACHABLE = "reachable"
    DEGRADED = "degraded"  # some registrations or addresses up, not all
    UNREACHABLE = "unreachable"  # timeout, refused, ICMP, TLS or DNS failure
    FAILED = "failed"  # any other final response; the code and reason say which
    UNREGISTERED = "unregistered"
    DISABLED = "disabled"


@dataclass(frozen=True)
class ContactStatus:
    uri: str
    expires_at: datetime | None


@dataclass(frozen=True)
class PeerStatus:
    address: str
    up: bool
    rtt_ms: float | None
    since: datetime


@dataclass(frozen=True)
class StatusObservation:
    """One agent's view of one trunk at one moment. `sequence` grows with every
    observation an agent makes, so a repeated or late delivery changes nothing."""

    tenant: str
    trunk_id: str
    agent_id: str
    sequence: int
    observed_at: datetime
    state: TrunkState
    since: datetime
    sip_code: int = 0
    reason: str = ""
    registrations_up: int = 0
    registrations_wanted: int = 0
    contacts: tuple[ContactStatus, ...] = field(default_factory=tuple)
    peers: tuple[PeerStatus, ...] = field(default_factory=tuple)
    active_inbound: int = 0
    active_outbound: int = 0
    alerts: tuple[str, ...] = ()  # recent fraud alerts of calls on this trunk, newest last
    # Where the trunk's requests go now, as RFC 3263 located it: `udp:192.0.2.7:5060
    # (sip2.example.com)`, the SRV target's name in brackets; "" before the first attempt.
    target: str = ""


@dataclass(frozen=True)
class AgentHeartbeat:
    """An agent says it is alive, where its AgentService answers, and which tenants it
    holds: how a PBX finds the agent to ask for a channel, and how doctor finds a dead one."""

    agent_id: str
    address: str  # host:port of its AgentService
    tenants: tuple[str, ...]
    observed_at: datetime
    started_at: datetime
    leaving: bool = False  # its last word: a clean stop, not a silence to alert on
    partitions: tuple[int, ...] = ()  # of the events topic, assigned to it by the group


class StatusSink(Protocol):
    def publish(self, observations: Sequence[StatusObservation]) -> None: ...


class AgentDirectory(Protocol):
    """Where agents announce themselves (the status view, or the status topic)."""

    def announce(self, heartbeat: AgentHeartbeat) -> None: ...
