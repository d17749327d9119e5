"""Call admission: which trunk carries a call, within each trunk's limits and live status.

The PBX asks for a channel; the answer is a lease on one trunk (renewed while the call
lasts, freed when released or when its TTL passes) or a refusal naming, for every trunk
considered, why it was not taken. Counting is exact: one lock guards the leases, so a
hundred concurrent requests at a trunk with ten channels get exactly ten leases."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.dialplan import matches
from domain.errors import ForbiddenError, NotFoundError, ValidationError
from domain.guard import prefix_of
from domain.model import Direction
from domain.routes import Strategy
from domain.routing import resolve_outbound
from domain.status import TrunkState
from sipagent.fraud import FraudDetector
from sipagent.runner import Ticker
from sipagent.state import AgentState, TenantState

OUTBOUND, INBOUND = Direction.OUTBOUND, Direction.INBOUND
UP_STATES = frozenset({TrunkState.REGISTERED, TrunkState.OK, TrunkState.DEGRADED})
FAILOVER_CODES = frozenset({408})  # and every 5xx
BREAKER_FAILURES = 3  # call failures within BREAKER_WINDOW open a trunk's breaker
BREAKER_WINDOW = 60.0


class RefusedError(Exception):
    """No channel: `code` is the gRPC status name, `considered` says why per trunk."""

    def __init__(self, code: str, message: str,
                 considered: list[Consideration] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.considered = considered or []


@dataclass(frozen=True)
class Consideration:
    trunk_id: str
    trunk_name: str
    outcome: str  # taken | disabled | down | full | degraded | deleted
    detail: str = ""


@dataclass
class Lease:
    lease_id: str
    tenant: str
    trunk_id: str
    trunk_name: str
    direction: str
    call_id: str
    dial_number: str  # as it must be dialled (outbound) or the DID (inbound)
    expires: float  # time.monotonic()
    route_id: str = ""
    destination: str = ""
    tried: list[str] = field(default_factory=list)  # trunks of this call so far
    inherited: bool = False  # a call from before a restart or hand-over, not yet renewed

    def expires_at(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=max(0.0, self.expires - time.monotonic()))


@dataclass
class Grant:
    lease: Lease
    considered: list[Consideration]


LiveState = Callable[[str], TrunkState | None]  # trunk id -> what the wire says (None: unknown)
Published = Callable[[str, str, int, int], None]  # tenant, trunk, inbound, outbound


class Admission:
    def __init__(self, state: AgentState, live: LiveState | None, ttl: float = 120.0,
                 on_calls: Published | None = None,
                 last_success: Callable[[str], float] | None = None,
                 detector: FraudDetector | None = None) -> None:
        """live: None means no SIP engine runs here: trunks count as up when enabled."""
        self.detector = detector
        self.state = state
        self.live = live
        self.ttl = ttl
        self.on_calls = on_calls
        self.last_success = last_success or (lambda trunk_id: 0.0)
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}
        # no lease expires before this (time.monotonic()): `_expire`, called by every
        # operation, looks through the leases only from then on (it scanned every lease on
        # every call: 10,000 calls in progress made each acquire walk 10,000 leases)
        self._next_expiry = math.inf
        self._active: dict[tuple[str, str], int] = {}  # (trunk, direction) -> calls
        self._failures: dict[str, list[float]] = {}
        self._open_since: dict[str, float] = {}  # trunk -> when its breaker opened
        self.decisions: dict[str, int] = {}
        self._sweeper: Ticker | None = None
        self._recent: dict[str, deque[float]] = {}  # guard key -> grant times, last minute
        self._daily: dict[str, tuple[str, int]] = {}  # guard key -> (UTC day, grants)
        self._expired: set[tuple[str, str]] = set()  # (tenant, trunk) to publish
        # partitions being taken over: their tenants' calls in progress are not known yet
        # (the status topic's scan, `seed`, comes after their state is restored)
        self._taking: dict[int, float] = {}  # partition -> time.monotonic() it lapses

    def start(self, every: float = 1.0) -> None:
        """Frees expired leases on a timer, so counts drop without waiting for a request."""
        self._sweeper = Ticker("lease-sweeper", every, self.sweep).start()

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()

    def leases(self) -> int:
        with self._lock:
            return len(self._leases)

    # --- the PBX's requests --------------------------------------------------------------

    def acquire(self, tenant: str, direction: str, number: str, extension: str = "",
                did: str = "", trunk: str = "", call_id: str = "", caller: str = "") -> Grant:
        """`caller` (inbound): the caller ID, matched against the routes' caller-ID
        patterns."""
        try:
            if direction == OUTBOUND:
                grant = self._outbound(tenant, number, extension, call_id)
            elif direction == INBOUND:
                grant = self._inbound(tenant, did or number, trunk, call_id, caller)
            else:
                raise ValidationError.single("direction", "must be outbound or inbound")
        except RefusedError as refusal:
            self._count(refusal.code)
            raise
        self._count("granted")
        return grant

    def renew(self, lease_id: str) -> Lease:
        with self._lock:
            self._expire()
            lease = self._leases.get(lease_id) or self._adopt(lease_id)
            if lease is None and self._being_taken_over(lease_id):
                # a call of the previous owner, renewed before its count is seeded: once
                # it is, the renewal adopts it
                raise RefusedError("UNAVAILABLE", f"lease {lease_id}: its trunk's tenant is "
                                   "being taken over by this agent; try again in a moment")
            if lease is None:
                raise NotFoundError(f"lease {lease_id} does not exist or has expired; "
                                    "acquire a new channel")
            lease.expires = time.monotonic() + self.ttl
            return lease

    def seed(self, tenant: str, trunk_id: str, inbound: int, outbound: int) -> None:
        """Calls that were up when this agent (re)started or took the tenant over, as the
        last status observation counted them: the ones this agent does not hold already
        keep their channels for one TTL, or for as long as the PBX renews them (renewing
        adopts them)."""
        with self._lock:
            for direction, count in ((INBOUND, inbound), (OUTBOUND, outbound)):
                held = self._active.get((trunk_id, direction), 0)  # ours already count
                for n in range(held, count):
                    lease = Lease(f"inherited.{trunk_id}.{direction}.{n}", tenant, trunk_id,
                                  "", direction, "", "", time.monotonic() + self.ttl,
                                  inherited=True)
                    if lease.lease_id not in self._leases:
                        self._hold(lease)
                        self._take(lease, +1)

    def taking_over(self, partitions: Iterable[int], at_most: float = 120.0) -> None:
        """New calls of the tenants these partitions carry are refused (UNAVAILABLE: try
        again) until `taken_over`, or for `at_most` seconds if that never comes (a
        failure between the two): from before their state is restored until the calls in
        progress their previous owner reported are seeded. Admitted in between, a call
        could take a channel one of those still holds, past a trunk's or a route's
        limit."""
        until = time.monotonic() + at_most
        with self._lock:
            self._taking = {**self._taking, **dict.fromkeys(partitions, until)}

    def taken_over(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        with self._lock:
            self._taking = {p: t for p, t in self._taking.items() if p not in gone}

    def _adopt(self, lease_id: str) -> Lease | None:
        """A lease another run of the agent granted (its id names trunk and direction)
        takes the place of one inherited call of its trunk and direction; without one
        (none was up, or a released lease renewed late) it is unknown. Lock held."""
        named = _named(lease_id)
        if named is None:
            return None
        trunk_id, direction, _ = named
        ghost = next((g for g in self._leases.values() if g.inherited and
                      g.trunk_id == trunk_id and g.direction == direction), None)
        if ghost is None:
            return None  # never resurrect a released lease
        del self._leases[ghost.lease_id]
        self._take(ghost, -1)
        tenant = ghost.tenant
        state = self.state.tenant(tenant)
        name = str(state.trunks.get(trunk_id, {}).get("name", "")) if state else ""
        lease = Lease(lease_id, tenant, trunk_id, name, direction, "", "",
                      time.monotonic() + self.ttl)
        self._hold(lease)
        self._take(lease, +1)
        return lease

    def release(self, lease_id: str) -> bool:
        """True when this call freed the channel; releasing twice is harmless (False). An
        id this agent cannot have issued (not of the lease form, or naming a trunk of no
        tenant it holds) is NotFoundError: a typo should not pass for a finished call."""
        with self._lock:
            self._expire()
            lease = self._leases.pop(lease_id, None)
            if lease is None and self._adopt(lease_id) is not None:
                lease = self._leases.pop(lease_id)  # a call from an earlier run ended
            if lease is not None:
                self._take(lease, -1)
            elif not self._could_have_issued(lease_id):
                raise NotFoundError(f"lease '{lease_id}' was never issued here (a lease id "
                                    "is TRUNK_ID.o|i.HEX, as AcquireChannel returned it)")
        if lease is not None:
            self._publish(lease.tenant, lease.trunk_id)
        return lease is not None

    def _being_taken_over(self, lease_id: str) -> bool:
        """While a take-over is under way (`taking_over`), the lease id (of the form
        `_grant` gives) names a trunk of a tenant whose calls in progress are not seeded
        yet, or of no tenant held (yet: its state may still be being restored). Lock
        held."""
        now = time.monotonic()
        if not any(now < until for until in self._taking.values()):
            return False
        named = _named(lease_id)
        if named is None:
            return False
        state = self._holder(named[0])
        return state is None or now < self._taking.get(state.partition, 0.0)

    def _could_have_issued(self, lease_id: str) -> bool:
        """The form `_grant` gives lease ids, naming a trunk of a tenant held. Lock held."""
        named = _named(lease_id)
        return named is not None and len(named[2]) == 32 and self._holder(named[0]) is not None

    def _holder(self, trunk_id: str) -> TenantState | None:
        """The state of the tenant held here that has this trunk, or None."""
        return next((state for name in self.state.tenants()
                     if (state := self.state.tenant(name)) is not None
                     and trunk_id in state.trunks), None)

    def report_failure(self, lease_id: str, sip_code: int) -> tuple[Grant | None, bool]:
        """The call failed on its trunk with `sip_code`. A 408 or 5xx releases the lease and
        returns the next candidate of the same route (failed_over=True); anything else only
        releases it (a wrong number stays wrong on another trunk)."""
        with self._lock:
            self._expire()
            lease = self._leases.get(lease_id)
        if lease is None or not self.release(lease_id):  # reported twice at once: one wins
            raise NotFoundError(f"lease {lease_id} does not exist or has expired")
        if not (sip_code in FAILOVER_CODES or 500 <= sip_code < 600):
            return None, False
        self._record_failure(lease.trunk_id)
        if lease.direction != OUTBOUND:
            return None, False
        grant = self._outbound(lease.tenant, "", "", lease.call_id, after=lease)
        self._count("failed_over")
        return grant, True

    # --- reads ---------------------------------------------------------------------------

    def active(self, trunk_id: str) -> tuple[int, int]:
        with self._lock:
            self._expire()
            return (self._active.get((trunk_id, INBOUND), 0),
                    self._active.get((trunk_id, OUTBOUND), 0))

    def sweep(self) -> int:
        """Frees expired leases, and publishes the counts of every trunk whose leases
        expired since the last sweep (here or in a request); returns how many expired."""
        with self._lock:
            gone = self._expire()
            changed, self._expired = self._expired, set()
        for tenant, trunk_id in changed:
            self._publish(tenant, trunk_id)
        return len(gone)

    # --- outbound ------------------------------------------------------------------------

    def _outbound(self, tenant: str, number: str, extension: str, call_id: str,
                  after: Lease | None = None) -> Grant:
        state = self._tenant(tenant)
        skipped: list[Consideration] = []
        if after is None:
            order = [r for r in state.outbound_order if r in state.outbound]
            try:
                resolution = resolve_outbound([(r, state.outbound[r]) for r in order],
                                              state.trunks, number, extension)
            except ForbiddenError as error:
                raise RefusedError("PERMISSION_DENIED", str(error)) from None
            except NotFoundError as error:
                raise RefusedError("NOT_FOUND", str(error)) from None
            except ValidationError as error:
                raise RefusedError("INVALID_ARGUMENT", str(error)) from None
            route_id, strategy = resolution.route_id, resolution.strategy
            dialled = resolution.number
            items = [(c.trunk_id, c.weight) for c in resolution.candidates]
            skipped = [Consideration(s.trunk_id, s.trunk_name, s.outcome, str(s))
                       for s in resolution.skipped]
        else:  # failover: the same route, the trunks this call has not tried
            route = state.outbound.get(after.route_id)
            if route is None or not route.get("enabled", True):
                raise RefusedError("NOT_FOUND", f"route {after.route_id} is gone or disabled")
            route_id, dialled = after.route_id, after.dial_number
            strategy = Strategy(route["strategy"])
            items = [(t["trunk_id"], t["weight"]) for t in route["trunks"]
                     if t["trunk_id"] not in after.tried]
        guards = [] if after is not None else [  # a failover is the same call, counted once
            (f"route {state.outbound[route_id].get('name', route_id)}", f"route:{route_id}",
             state.outbound[route_id].get("guard")),
            (f"tenant {tenant}", f"tenant:{tenant}", state.policy.get("guard"))]
        for label, _, guard in guards:
            self._check_prefixes(label, guard, number, dialled)
        with self._lock:
            self._expire()
            now = time.time()
            for label, key, guard in guards:
                self._check_counts(label, key, guard, now)
            considered = list(skipped)
            usable: list[tuple[str, int, int]] = []  # trunk, weight, free channels
            for trunk_id, weight in items:
                verdict = self._usable(state, trunk_id, OUTBOUND)
                if isinstance(verdict, Consideration):
                    considered.append(verdict)
                else:
                    usable.append((trunk_id, weight, verdict))
            chosen = self._pick(strategy, usable)
            if chosen is None:
                raise self._refusal(considered, route_id)
            trunk = state.trunks[chosen]
            lease = self._new_lease(tenant, chosen, str(trunk["name"]), OUTBOUND, call_id,
                                    dialled, route_id)
            lease.tried = [*(after.tried if after else []), chosen]
            considered.append(Consideration(chosen, str(trunk["name"]), "taken"))
            if self.detector is not None and after is None:
                self.detector.observe(tenant, extension, dialled, route_id, chosen,
                                      state.policy)
            for _, key, guard in guards:
                if guard and guard.get("max_calls_per_minute"):  # only what a rate reads
                    self._recent.setdefault(key, deque()).append(now)
                day = _day(now)
                last_day, count = self._daily.get(key, (day, 0))
                self._daily[key] = (day, count + 1 if last_day == day else 1)
        self._publish(tenant, chosen)
        return Grant(lease, considered)

    @staticmethod
    def _check_prefixes(label: str, guard: dict[str, Any] | None, number: str,
                        dialled: str) -> None:
        if not guard:
            return
        for form in dict.fromkeys((dialled, number)):
            blocked = prefix_of(form, guard.get("block_prefixes") or [])
            if blocked is not None:
                raise RefusedError("PERMISSION_DENIED", f"{label}: guard block_prefixes: "
                                   f"{form} starts with the blocked prefix {blocked}")
        allowed = guard.get("allow_prefixes") or []
        if allowed and all(prefix_of(f, allowed) is None for f in (dialled, number)):
            raise RefusedError("PERMISSION_DENIED", f"{label}: guard allow_prefixes: {dialled} "
                               f"starts with none of {', '.join(allowed[:10])}")

    def _check_counts(self, label: str, key: str, guard: dict[str, Any] | None,
                      now: float) -> None:
        """Rate and daily cap; called with the lock held, so the count is exact."""
        if not guard:
            return
        rate = guard.get("max_calls_per_minute")
        if rate:
            recent = self._recent.setdefault(key, deque())
            while recent and now - recent[0] >= 60.0:
                recent.popleft()
            if len(recent) >= rate:
                raise RefusedError("RESOURCE_EXHAUSTED", f"{label}: guard max_calls_per_minute "
                                   f"({rate}) reached; retry in {60 - (now - recent[0]):.0f} s")
        cap = guard.get("daily_cap")
        if cap:
            day, count = self._daily.get(key, (_day(now), 0))
            if day == _day(now) and count >= cap:
                raise RefusedError("RESOURCE_EXHAUSTED", f"{label}: guard daily_cap ({cap}) "
                                   f"reached for {day} (UTC)")

    @staticmethod
    def _pick(strategy: Strategy, usable: list[tuple[str, int, int]]) -> str | None:
        if not usable:
            return None
        if strategy is Strategy.SPREAD:  # the most free channels; ties in route order
            return max(enumerate(usable), key=lambda e: (e[1][2], -e[0]))[1][0]
        if strategy is Strategy.WEIGHTED:
            total = sum(w for _, w, _ in usable)
            point = random.uniform(0, total)
            for trunk_id, weight, _ in usable:
                point -= weight
                if point <= 0:
                    return trunk_id
            return usable[-1][0]
        return usable[0][0]  # failover: the first usable in order

    # --- inbound -------------------------------------------------------------------------

    def _inbound(self, tenant: str, did: str, trunk_ref: str, call_id: str,
                 caller: str = "") -> Grant:
        state = self._tenant(tenant)
        trunk_id = self._trunk_id(state, trunk_ref)
        if trunk_id is None:
            raise RefusedError("NOT_FOUND", f"no trunk '{trunk_ref}' in tenant '{tenant}' (the "
                          "trunk the call arrived on, by id or name)")
        route = _inbound_route(state, did, trunk_id, caller)
        if route is None:
            raise RefusedError("NOT_FOUND", f"no enabled inbound route matches DID '{did}' "
                               f"(caller '{caller}') on trunk {state.trunks[trunk_id]['name']}")
        with self._lock:
            self._expire()
            verdict = self._usable(state, trunk_id, INBOUND, check_live=False)
            if isinstance(verdict, Consideration):
                raise self._refusal([verdict], "")
            trunk = state.trunks[trunk_id]
            lease = self._new_lease(tenant, trunk_id, str(trunk["name"]), INBOUND, call_id,
                                    did, route[0])
            lease.destination = str(route[1]["destination"])
        self._publish(tenant, trunk_id)
        return Grant(lease, [Consideration(trunk_id, str(trunk["name"]), "taken")])

    # --- shared --------------------------------------------------------------------------

    def _tenant(self, tenant: str) -> TenantState:
        state = self.state.tenant(tenant)
        if state is None:
            raise RefusedError("FAILED_PRECONDITION", f"tenant '{tenant}' is not held by this "
                               "agent (unknown, or owned by another agent of the group)")
        if time.monotonic() < self._taking.get(state.partition, 0.0):
            raise RefusedError("UNAVAILABLE", f"tenant '{tenant}' is being taken over by this "
                               "agent: the calls in progress on its trunks are not known yet; "
                               "try again in a moment")
        return state

    @staticmethod
    def _trunk_id(state: TenantState, ref: str) -> str | None:
        if ref in state.trunks:
            return ref
        folded = ref.casefold()
        return next((i for i, t in state.trunks.items()
                     if str(t["name"]).casefold() == folded), None)

    def _usable(self, state: TenantState, trunk_id: str, direction: str,
                check_live: bool = True) -> Consideration | int:
        """Free channels of a trunk for a new call, or why it cannot take one. Called
        with the lock held."""
        trunk = state.trunks.get(trunk_id)
        if trunk is None:
            return Consideration(trunk_id, trunk_id, "deleted", "the trunk was deleted")
        name = str(trunk["name"])
        if not trunk.get("enabled", True):
            return Consideration(trunk_id, name, "disabled", "the trunk is disabled")
        if check_live and self.live is not None:
            live = self.live(trunk_id)
            if live not in UP_STATES:
                return Consideration(trunk_id, name, "down",
                                     f"{live.value if live else 'no status yet'} on the wire")
        if trunk_id in self._open_since:
            if self.last_success(trunk_id) > self._open_since[trunk_id]:
                del self._open_since[trunk_id]  # a registration or keepalive since: closed
                self._failures.pop(trunk_id, None)
            elif self.live is not None or time.monotonic() - self._open_since[trunk_id] < \
                    BREAKER_WINDOW:
                return Consideration(trunk_id, name, "degraded",
                                     f"{BREAKER_FAILURES} call failures within "
                                     f"{BREAKER_WINDOW:.0f} s; waiting for a successful "
                                     "registration or keepalive")
            else:
                del self._open_since[trunk_id]
        limits = trunk.get("call_limits") or {}
        inbound = self._active.get((trunk_id, INBOUND), 0)
        outbound = self._active.get((trunk_id, OUTBOUND), 0)
        free = 10**9
        for limit, used, label in (
                (limits.get("max_concurrent_calls"), inbound + outbound, "total"),
                (limits.get(f"max_{direction}_calls"), outbound if direction == OUTBOUND
                 else inbound, direction)):
            if limit is None:
                continue
            if used >= int(limit):
                return Consideration(trunk_id, name, "full",
                                     f"{used} of {limit} {label} channels in use")
            free = min(free, int(limit) - used)
        return free

    @staticmethod
    def _refusal(considered: list[Consideration], route_id: str) -> RefusedError:
        listed = "; ".join(f"{c.trunk_name}: {c.outcome} ({c.detail})" for c in considered)
        if not considered:
            return RefusedError("FAILED_PRECONDITION", "the route has no trunk", considered)
        if any(c.outcome == "full" for c in considered):
            return RefusedError("RESOURCE_EXHAUSTED", f"every trunk that is up is full: {listed}",
                           considered)
        return RefusedError("FAILED_PRECONDITION", f"no trunk is up: {listed}", considered)

    def _new_lease(self, tenant: str, trunk_id: str, trunk_name: str, direction: str,
                   call_id: str, number: str, route_id: str) -> Lease:
        lease_id = f"{trunk_id}.{direction[0]}.{uuid.uuid4().hex}"  # adoptable elsewhere
        lease = Lease(lease_id, tenant, trunk_id, trunk_name, direction, call_id,
                      number, time.monotonic() + self.ttl, route_id)
        self._hold(lease)
        self._take(lease, +1)
        return lease

    def _hold(self, lease: Lease) -> None:
        """Keeps a new lease. A lease's expiry only ever moves later (renewal), so the
        bound of `_expire` stays true without being told of renewals."""
        self._leases[lease.lease_id] = lease
        self._next_expiry = min(self._next_expiry, lease.expires)

    def _take(self, lease: Lease, delta: int) -> None:
        key = (lease.trunk_id, lease.direction)
        self._active[key] = max(0, self._active.get(key, 0) + delta)

    def _expire(self) -> list[Lease]:
        now = time.monotonic()
        if now < self._next_expiry:
            return []
        gone: list[Lease] = []
        soonest = math.inf
        for lease in self._leases.values():
            if lease.expires <= now:
                gone.append(lease)
            elif lease.expires < soonest:
                soonest = lease.expires
        self._next_expiry = soonest
        for lease in gone:
            del self._leases[lease.lease_id]
            self._take(lease, -1)
            self._expired.add((lease.tenant, lease.trunk_id))
        return gone

    def _record_failure(self, trunk_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(trunk_id, []) if now - t < BREAKER_WINDOW]
            recent.append(now)
            self._failures[trunk_id] = recent
            if len(recent) >= BREAKER_FAILURES and trunk_id not in self._open_since:
                self._open_since[trunk_id] = now

    def degraded(self, trunk_id: str) -> bool:
        with self._lock:
            return trunk_id in self._open_since

    def _publish(self, tenant: str, trunk_id: str) -> None:
        if self.on_calls is not None:
            inbound, outbound = self.active(trunk_id)
            self.on_calls(tenant, trunk_id, inbound, outbound)

    def _count(self, outcome: str) -> None:
        with self._lock:  # requests arrive on many threads: no increment lost
            self.decisions[outcome] = self.decisions.get(outcome, 0) + 1

    def decision_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.decisions)


def _day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).date().isoformat()


def _inbound_route(state: TenantState, did: str, trunk_id: str,
                   caller: str = "") -> tuple[str, Any] | None:
    """The most specific enabled inbound route for a DID (and caller ID) on a trunk: an
    exact DID before a pattern before a catch-all, then a route with a caller-ID pattern
    (that matches) before one without, a route for this trunk before one for any trunk. A
    route with a caller-ID pattern never takes a call whose caller ID does not match it."""
    best: tuple[tuple[int, int, int], str, Any] | None = None
    for route_id, route in state.inbound.items():
        if not route.get("enabled", True):
            continue
        if route.get("trunk_id") and route["trunk_id"] != trunk_id:
            continue
        pattern = str(route.get("did_pattern") or "")
        if pattern:
            bare = pattern.removeprefix("_")
            if not matches(bare, did):
                continue
            exact = 2 if bare == did else 1
        else:
            exact = 0
        caller_pattern = str(route.get("caller_id_pattern") or "").removeprefix("_")
        if caller_pattern and not (matches(caller_pattern, caller) or
                                   matches(caller_pattern, caller.lstrip("+"))):
            continue
        rank = (exact, 1 if caller_pattern else 0, 1 if route.get("trunk_id") else 0)
        if best is None or rank > best[0]:
            best = (rank, route_id, route)
    return (best[1], best[2]) if best else None


def _named(lease_id: str) -> tuple[str, str, str] | None:
    """(trunk id, direction, the rest) of a lease id of the form `_grant` gives
    (`trunk.o|i.hex`), or None."""
    parts = lease_id.split(".")
    if len(parts) != 3 or parts[1] not in ("o", "i"):
        return None
    return parts[0], OUTBOUND if parts[1] == "o" else INBOUND, parts[2]
