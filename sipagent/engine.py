"""The SIP engine: every enabled trunk live on the wire. Register and account trunks hold
their registrations; peer trunks are watched with OPTIONS; every transition is a status
observation. One asyncio loop in a thread of its own; `update()` is called from the feed
thread with a trunk's settings (None when it was deleted)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, uuid5

from domain.certificates import load_client_certificate
from domain.status import ContactStatus, PeerStatus, StatusObservation, StatusSink, TrunkState
from domain.values import parse_host_port
from sipagent.destinations import Destinations, Network
from sipagent.nat import PublicAddress, stun_server
from sipagent.runner import Ticker
from sipagent.settings import SipSettings, TrunkTimers
from sipagent.sip.digest import DigestClient, parse_challenge
from sipagent.sip.locate import Locator, Target, parse_resolver, sticky
from sipagent.sip.message import Request, Response, SipParseError, split_list
from sipagent.sip.route import first_hop, proxy_route
from sipagent.sip.stun import Mapping
from sipagent.sip.transport import (
    USER_AGENT,
    Destination,
    SipTransport,
    TransportError,
    new_tag,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
WIRE_FIELDS = ("type", "host", "transport", "username", "password", "auth_id",
               "max_registrations", "from_user", "from_domain", "peer_addresses", "nat",
               "enabled", "outbound_proxy", "timers", "client_certificate", "client_key")


def backoff(failures: int, base: float, cap: float) -> float:
    """RFC 5626 4.5: W = min(cap, base * 2^failures), waited uniformly in [W/2, W]."""
    window = min(cap, base * 2 ** max(0, failures))
    return random.uniform(window / 2, window)


def refresh_after(granted: int) -> float:
    """When to refresh a registration granted for `granted` seconds: halfway for short
    grants, five minutes before expiry for long ones; never in the last seconds, so a
    lost request still has a whole transaction (32 s) and a retry before expiry."""
    return max(granted / 2, granted - 300.0)


@dataclass
class _Reported:
    state: TrunkState
    since: datetime


class Reporter:
    """Turns state into observations with a growing sequence; publishes in batches off the
    event loop (the sink may write to a database)."""

    def __init__(self, sink: StatusSink, agent_id: str) -> None:
        self.sink = sink
        self.agent_id = agent_id
        self._sequence = int(time.time() * 1000)  # grows across restarts too
        self._last: dict[str, _Reported] = {}
        self._queue: dict[str, StatusObservation] = {}  # per trunk the newest, oldest first
        self._latest: dict[str, StatusObservation] = {}
        self._calls: dict[str, tuple[int, int]] = {}
        self._flusher: Ticker | None = None
        self._alerts: dict[str, list[str]] = {}
        self._lock = threading.RLock()
        self.published = 0

    def observe(self, tenant: str, trunk_id: str, state: TrunkState, **fields: Any) -> None:
        with self._lock:
            now = datetime.now(UTC)
            last = self._last.get(trunk_id)
            if last is None or last.state != state:
                last = self._last[trunk_id] = _Reported(state, now)
            inbound, outbound = self._calls.get(trunk_id, (0, 0))
            fields = {"active_inbound": inbound, "active_outbound": outbound,
                      "alerts": tuple(self._alerts.get(trunk_id, ())), **fields}
            self._sequence += 1
            observation = StatusObservation(
                tenant=tenant, trunk_id=trunk_id, agent_id=self.agent_id,
                sequence=self._sequence, observed_at=now, state=state, since=last.since,
                **fields)
            self._latest[trunk_id] = observation
            self._queue.pop(trunk_id, None)
            self._queue[trunk_id] = observation

    def calls(self, tenant: str, trunk_id: str, inbound: int, outbound: int,
              fallback: TrunkState = TrunkState.REGISTERING,
              reason: str = "no report yet") -> None:
        """Active calls changed (admission): the trunk's last observation again, with them
        (`fallback` and `reason` when nothing was observed yet)."""
        with self._lock:
            self._calls[trunk_id] = (inbound, outbound)
            last = self._latest.get(trunk_id)
        if last is None:
            self.observe(tenant, trunk_id, fallback, reason=reason)
            return
        self.observe(tenant, trunk_id, last.state, sip_code=last.sip_code, reason=last.reason,
                     registrations_up=last.registrations_up,
                     registrations_wanted=last.registrations_wanted, contacts=last.contacts,
                     peers=last.peers, active_inbound=inbound, active_outbound=outbound,
                     alerts=tuple(self._alerts.get(trunk_id, ())), target=last.target)

    def alert(self, tenant: str, trunk_id: str, text: str) -> None:
        """A fraud alert on calls of this trunk: shown with its status (the last five)."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
        with self._lock:
            self._alerts[trunk_id] = [*self._alerts.get(trunk_id, []), f"{stamp} {text}"][-5:]
            inbound, outbound = self._calls.get(trunk_id, (0, 0))
        self.calls(tenant, trunk_id, inbound, outbound)

    def state_of(self, trunk_id: str) -> TrunkState | None:
        with self._lock:
            last = self._latest.get(trunk_id)
        return last.state if last is not None else None

    def start_flushing(self, every: float = 0.1) -> None:
        """A thread that publishes queued observations (when no engine loop does)."""
        self._flusher = Ticker("status-flush", every, self.flush).start()

    def stop_flushing(self) -> None:
        if self._flusher is not None:
            self._flusher.stop()
        self.flush()

    def flush(self) -> int:
        with self._lock:
            batch, self._queue = list(self._queue.values()), {}
        if batch:
            try:
                self.sink.publish(batch)
            except Exception:  # kept for the next flush, unless a newer one came meanwhile
                with self._lock:
                    self._queue = {**{o.trunk_id: o for o in batch}, **self._queue}
                raise
            self.published += len(batch)
        return len(batch)


@dataclass
class TrunkSpec:
    tenant: str
    trunk_id: str
    settings: dict[str, Any]

    @property
    def wire(self) -> tuple[Any, ...]:
        return tuple(repr(self.settings.get(f)) for f in WIRE_FIELDS)


@dataclass
class Counters:
    registers_sent: int = 0
    registrations_ok: int = 0
    registration_failures: dict[str, int] = field(default_factory=dict)
    unregisters: int = 0
    options_sent: int = 0
    options_answered: int = 0
    options_missed: int = 0


class SipAgent:
    def __init__(self, settings: SipSettings, sink: StatusSink) -> None:
        self.settings = settings
        self.reporter = Reporter(sink, settings.agent_id)
        self.counters = Counters()
        self.transport: SipTransport | None = None
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._workers: dict[str, _Worker] = {}
        self._specs: dict[str, TrunkSpec] = {}
        self._in_flight: asyncio.Semaphore | None = None
        self._destinations = Destinations.parse(",".join(settings.destinations))
        self.locator = Locator(parse_resolver(settings.resolver), self._destinations,
                               ipv6=":" in settings.listen_host)
        self._ready = threading.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._changing: dict[str, asyncio.Task[None]] = {}
        # trunks held here disabled, reported so: a change that leaves one disabled (its
        # description, say) reports nothing again. A report per change grew the status
        # topic with the history, and the take-over's scan of it with it (bench/takeover.py
        # makes each trunk's 99 changes while it is disabled)
        self._disabled: set[str] = set()
        self._parked: dict[str, _Worker] = {}
        self.nat: PublicAddress | None = None

    # --- life cycle (any thread) ---------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sip", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise OSError("the SIP engine did not start")
        if self.transport is None:
            raise OSError(f"cannot listen for SIP on {self.settings.listen_host}:"
                          f"{self.settings.listen_port}")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._open())
            self._ready.set()
            if self.transport is not None:
                self._loop.run_forever()
        finally:
            self._ready.set()
            self._close_loop()

    def _close_loop(self) -> None:
        """Ends what is left on the loop (tasks, async generators, the default executor)
        and closes it, on the loop's own thread once it has stopped."""
        loop = self._loop
        try:
            left = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    async def _open(self) -> None:
        context = None
        if self.settings.tls_ca:
            context = ssl.create_default_context(cafile=self.settings.tls_ca)
        transport = SipTransport(self.settings.listen_host, self.settings.listen_port,
                                 tls_context=context, t1=self.settings.t1)
        try:
            await transport.start()
        except OSError as error:
            log.error("SIP: cannot listen on %s:%d: %s", self.settings.listen_host,
                      self.settings.listen_port, error)
            return
        try:
            await transport.listen_streams(self.settings.tcp_port, self.settings.tls_port,
                                           self._server_tls())
        except (OSError, ssl.SSLError) as error:
            log.error("SIP: cannot listen for TCP/TLS on %s: %s", self.settings.listen_host,
                      error)
            transport.close()
            return
        self.transport = transport
        self.nat = PublicAddress(transport, self.resolve, self.settings.stun_interval,
                                 self.settings.stun_timeout)
        self._in_flight = asyncio.Semaphore(self.settings.max_in_flight)
        self._flusher = asyncio.ensure_future(self._flush_loop())
        log.info("SIP agent %s on udp/tcp/tls from %s:%d, sending to %s",
                 self.settings.agent_id, self.settings.listen_host, transport.listen_port,
                 self._destinations)
        if not self.settings.destinations:
            log.warning("SIP destinations not chosen: the agent sends only to globally "
                        "routable addresses; set TRUNKPLANE_SIP_DESTINATIONS (CIDRs or `any`)")

    def _server_tls(self) -> ssl.SSLContext | None:
        if not (self.settings.tls_cert and self.settings.tls_key):
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
        return context

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Runs a coroutine on the engine's loop and waits for its result (any thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def trunk_for_line(self, line: str) -> tuple[str, str] | None:
        """(tenant, trunk id) of the registration whose Contact carries `;line=<line>`:
        how an inbound call sent to a registered Contact finds its trunk."""
        for worker in list(self._workers.values()):
            if isinstance(worker, _RegisterWorker) and any(
                    c.contact.endswith(f";line={line}") for c in worker.lines):
                return worker.spec.tenant, worker.spec.trunk_id
        return None

    def peer_destination(self, trunk_id: str) -> str | None:
        """A peer trunk's address to call: the first one answering OPTIONS, else the
        first listed."""
        worker = self._workers.get(trunk_id)
        if not isinstance(worker, _PeerWorker) or not worker.peers:
            return None
        up = [a for a, p in worker.peers.items() if p.up]
        return str(up[0] if up else next(iter(worker.peers)))

    def stop(self, timeout: float = 10.0) -> None:
        """Unregisters every registration (a clean shutdown), then stops and closes the
        event loop."""
        if self._thread is None or not self._thread.is_alive():
            if self._thread is None and not self._loop.is_closed():
                self._loop.close()  # never started
            return
        done: Future[None] = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            done.result(timeout)
        except Exception as error:  # stop anyway
            log.warning("SIP: shutdown incomplete: %s", error)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self.reporter.flush()

    async def _shutdown(self) -> None:
        workers = list(self._workers.values())
        self._workers.clear()
        await asyncio.gather(*(w.stop(unregister=True) for w in workers),
                             return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
        if self.nat is not None:
            self.nat.close()
        if self.transport is not None:
            self.transport.close()

    def update(self, tenant: str, trunk_id: str, settings: dict[str, Any] | None) -> None:
        """A trunk's new settings (None: deleted). Thread-safe; ignored once stopped."""
        self._soon(self._update, tenant, trunk_id, settings)

    def _soon(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the agent stopped
            self._loop.call_soon_threadsafe(callback, *args)

    def release(self, tenant: str, trunk_id: str) -> None:
        """Another agent holds the trunk now: stop refreshing it, without unREGISTER and
        without a status report. Its binding stays until the new owner's REGISTER
        replaces it (same +sip.instance and reg-id), so no call finds it unregistered.
        Thread-safe."""
        self._soon(self._release, trunk_id)

    def park(self, timeout: float = 10.0) -> list[str]:
        """A clean stop that hands over: every trunk stops refreshing and keeps its
        bindings for whoever takes the trunks over. Returns the trunks parked; then
        `unregister_parked` removes the bindings nobody took over. Thread-safe."""
        done = asyncio.run_coroutine_threadsafe(self._park(), self._loop)
        return done.result(timeout)

    def unregister_parked(self, keep: Sequence[str], timeout: float = 10.0) -> int:
        """unREGISTERs the parked trunks except `keep` (taken over by another agent: their
        binding is the new owner's now). Returns how many trunks it unregistered."""
        done = asyncio.run_coroutine_threadsafe(self._unregister_parked(set(keep)),
                                                self._loop)
        return done.result(timeout)

    def live_state(self, trunk_id: str) -> TrunkState | None:
        """What the engine last found on the wire for a trunk (None: nothing yet)."""
        worker = self._workers.get(trunk_id)
        return worker.state if worker is not None else None

    def last_success(self, trunk_id: str) -> float:
        """time.monotonic() of the trunk's last 200 to REGISTER or answer to OPTIONS."""
        worker = self._workers.get(trunk_id)
        return worker.last_success if worker is not None else 0.0

    def snapshot(self) -> dict[str, Any]:
        """What the metrics read: trunks by state, peer round trips."""
        states: dict[str, int] = {}
        rtts: list[tuple[str, str, str, float]] = []  # trunk id, trunk name, address, ms
        for worker in list(self._workers.values()):
            states[worker.state.value] = states.get(worker.state.value, 0) + 1
            name = str(worker.spec.settings.get("name", ""))
            for address, peer in getattr(worker, "peers", {}).items():
                if peer.rtt_ms is not None:
                    rtts.append((worker.spec.trunk_id, name, address, peer.rtt_ms))
        return {"states": states, "rtts": rtts, "counters": self.counters}

    # --- on the loop ---------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        failing = False
        while True:
            await asyncio.sleep(0.1)
            try:
                await loop.run_in_executor(None, self.reporter.flush)
                if failing:
                    log.info("SIP: publishing status works again")
                failing = False
            except Exception as error:  # the newest of each trunk is kept for the next try
                if not failing:
                    log.warning("SIP: publishing status failed (%s); retrying", error)
                failing = True

    def _release(self, trunk_id: str) -> None:
        self._disabled.discard(trunk_id)  # if it comes back, it is reported again
        old = self._workers.pop(trunk_id, None)
        if old is not None:
            before = self._changing.get(trunk_id)
            self._changing[trunk_id] = asyncio.ensure_future(self._stop_after(before, old))

    @staticmethod
    async def _stop_after(before: asyncio.Task[None] | None, old: _Worker) -> None:
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)
        await old.stop(unregister=False)

    async def _park(self) -> list[str]:
        await asyncio.gather(*self._changing.values(), return_exceptions=True)
        self._parked = dict(self._workers)
        self._workers.clear()
        await asyncio.gather(*(w.stop(unregister=False) for w in self._parked.values()),
                             return_exceptions=True)
        return sorted(self._parked)

    async def _unregister_parked(self, keep: set[str]) -> int:
        gone = [w for trunk_id, w in self._parked.items() if trunk_id not in keep]
        await asyncio.gather(*(w.unregister() for w in gone), return_exceptions=True)
        for worker in gone:
            worker.report(TrunkState.UNREGISTERED, reason=f"agent {self.settings.agent_id} "
                          "stopped and no other agent took the trunk over")
        self._parked = {}
        return len(gone)

    def _update(self, tenant: str, trunk_id: str, settings: dict[str, Any] | None) -> None:
        old = self._workers.get(trunk_id)
        spec = TrunkSpec(tenant, trunk_id, dict(settings)) if settings is not None else None
        if old is not None and spec is not None and old.spec.wire == spec.wire:
            old.spec = spec
            return
        starting = spec is not None and bool(spec.settings.get("enabled", True))
        if old is None and spec is not None and not starting and trunk_id in self._disabled:
            return  # disabled before and after: nothing on the wire or to report changes
        if spec is not None and not starting:
            self._disabled.add(trunk_id)
        else:
            self._disabled.discard(trunk_id)
        if old is not None:
            del self._workers[trunk_id]
        worker: _Worker | None = None
        if starting and spec is not None:
            kind = spec.settings.get("type")
            worker = _PeerWorker(self, spec) if kind == "peer" else _RegisterWorker(self, spec)
            self._workers[trunk_id] = worker
        before = self._changing.get(trunk_id)
        task = asyncio.ensure_future(self._replace(before, old, worker, tenant, trunk_id, spec))
        self._changing[trunk_id] = task
        task.add_done_callback(lambda t: self._changing.pop(trunk_id, None)
                               if self._changing.get(trunk_id) is t else None)

    async def _replace(self, before: asyncio.Task[None] | None, old: _Worker | None,
                       new: _Worker | None, tenant: str, trunk_id: str,
                       spec: TrunkSpec | None) -> None:
        if before is not None:  # changes of one trunk apply in order
            await asyncio.gather(before, return_exceptions=True)
        if old is not None:
            await old.stop(unregister=True)  # a changed host/credential re-registers after
        if self._workers.get(trunk_id) is new:  # not replaced again meanwhile
            self._client_certificate(trunk_id, new.spec if new is not None else None)
        if new is not None:
            if self._workers.get(trunk_id) is new:  # not replaced again meanwhile
                new.start(first=old is None)
        elif spec is None:
            self.reporter.observe(tenant, trunk_id, TrunkState.UNREGISTERED,
                                  reason="not held here: deleted, or its tenant moved to "
                                         "another agent")
        else:
            self.reporter.observe(tenant, trunk_id, TrunkState.DISABLED,
                                  reason="trunk disabled")

    def _client_certificate(self, trunk_id: str, spec: TrunkSpec | None) -> None:
        """Loads the trunk's TLS client certificate for its connections (or removes it):
        connections made with the one before close."""
        assert self.transport is not None
        s = spec.settings if spec is not None else {}
        certificate, key = str(s.get("client_certificate") or ""), str(s.get("client_key") or "")
        if not (certificate and key):
            self.transport.set_client_context(trunk_id, None)
            return
        context = ssl.create_default_context(cafile=self.settings.tls_ca or None)
        try:
            load_client_certificate(context, certificate, key)
        except (ssl.SSLError, ValueError, OSError) as error:
            log.warning("trunk %s: its client certificate cannot be loaded: %s", trunk_id, error)
            self.transport.set_client_context(trunk_id, None)
            return
        self.transport.set_client_context(trunk_id, context)

    async def resolve(self, host: str, transport: str) -> Destination:
        """The first place to send to (RFC 3263), within TRUNKPLANE_SIP_DESTINATIONS."""
        return (await self.locator.locate(host, transport))[0].destination

    async def locate(self, host: str, transport: str, trunk_id: str = "") -> list[Target]:
        """Every place to send to, in the order to try them (RFC 3263); with a trunk, the
        target its registration uses first while that stays among the best."""
        targets = await self.locator.locate(host, transport)
        worker = self._workers.get(trunk_id)
        if isinstance(worker, _RegisterWorker):
            targets = sticky(targets, worker.lines[0].destination)
        if worker is not None:  # over the trunk's own TLS connections (client certificate)
            targets = [replace(t, destination=worker.own(t.destination)) for t in targets]
        return targets

    def trunk_timers(self, trunk: dict[str, Any]) -> TrunkTimers:
        """A trunk's timers: its own, else the agent's."""
        return TrunkTimers.of(self.settings, trunk)

    async def send(self, request: Request, destination: Destination,
                   timeout: float | None = None,
                   sent_by: tuple[str, int] | None = None) -> Response:
        """One transaction; what the answer's Via says of our address is kept (rport)."""
        assert self.transport is not None and self._in_flight is not None
        async with self._in_flight:
            response = await self.transport.request(request, destination, timeout, sent_by)
        if self.nat is not None:
            self.nat.learn(destination, response)
        return response

    def public_address(self, nat: dict[str, Any] | None, destination: Destination
                       ) -> tuple[str, int] | None:
        """The address and port a trunk with these NAT settings shows `destination` in
        Contact and Via (None: the local one); see sipagent.nat."""
        return self.nat.for_trunk(nat, destination) if self.nat is not None else None


async def resolve(host: str, transport: str,
                  allowed: Destinations | Sequence[Network] = ()) -> Destination:
    """host[:port] -> a destination, honouring the allowed destinations (a list of
    networks: those; an empty list: anywhere)."""
    if not isinstance(allowed, Destinations):
        allowed = Destinations(tuple(allowed), anywhere=not allowed)
    try:
        where = parse_host_port(host)
    except ValueError as error:
        raise TransportError(f"bad host '{host}': {error}") from None
    port = where.port or (5061 if transport == "tls" else 5060)
    address = where.host
    if not where.is_ip:
        if not allowed.resolves_names:
            raise TransportError(f"{where.host}: names are not resolved while "
                                 "TRUNKPLANE_SIP_DESTINATIONS restricts where SIP goes")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                where.host, port, type=socket.SOCK_DGRAM)
        except socket.gaierror as error:
            raise TransportError(f"DNS: {where.host}: {error.strerror}") from None
        address = str(infos[0][4][0])
    if not allowed.allows(address):
        raise TransportError(f"{address} is outside TRUNKPLANE_SIP_DESTINATIONS ({allowed})")
    return Destination(transport, address, port, server_name=where.host)


class _Worker:
    state: TrunkState = TrunkState.REGISTERING

    def __init__(self, agent: SipAgent, spec: TrunkSpec) -> None:
        self.agent = agent
        self.spec = spec
        self.timers = TrunkTimers.of(agent.settings, spec.settings)
        self.peers: dict[str, _Peer] = {}  # addresses watched with OPTIONS
        self.last_success = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._warned: tuple[str, int, str] | None = None  # the last failure logged
        self.nat: dict[str, Any] = dict(spec.settings.get("nat") or {})
        self._stun = stun_server(self.nat)
        self._watching = False

    @property
    def label(self) -> str:
        """How the log names the trunk: by name, as people do, with the id to search by."""
        return f"{self.spec.settings.get('name') or '?'} ({self.spec.tenant}/{self.spec.trunk_id})"

    def warn_once(self, state: TrunkState, code: int, reason: str) -> None:
        """One warning per change of failure: an account's registrations failing alike, or
        a trunk failing the same way again, are not news."""
        failure = (state.value, code, reason)
        if failure != self._warned:
            self._warned = failure
            log.warning("trunk %s: %s (%s %s)", self.label, state.value, code or "-", reason)

    def start(self, first: bool) -> None:
        raise NotImplementedError

    async def stop(self, unregister: bool) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._watching and self.agent.nat is not None:
            self.agent.nat.unwatch(self._stun, self.remapped)
            self._watching = False

    async def mapped(self) -> None:
        """With NAT on, no external IP and a STUN server: its first answer before the
        first request (the server is asked once for all trunks that share it)."""
        if self._stun and not self._watching and self.agent.nat is not None:
            self._watching = True
            await self.agent.nat.watch(self._stun, self.remapped)

    def remapped(self, old: Mapping | None, new: Mapping) -> None:
        """The STUN server sees another public address now (the NAT rebound us)."""

    def public(self, destination: Destination) -> tuple[str, int] | None:
        return self.agent.public_address(self.nat, destination)

    async def unregister(self) -> None:
        """Removes what the worker holds on the wire (registrations); after stop()."""

    def report(self, state: TrunkState, **fields: Any) -> None:
        self.state = state
        self.agent.reporter.observe(self.spec.tenant, self.spec.trunk_id, state, **fields)

    def _summary(self) -> None:
        raise NotImplementedError

    def own(self, destination: Destination) -> Destination:
        """A destination of this trunk: over TLS, on connections of its own that present
        its client certificate, when it has one."""
        if destination.transport == "tls" and self.spec.settings.get("client_certificate"):
            return replace(destination, client=self.spec.trunk_id)
        return destination

    def _per_target(self, targets: Sequence[Target], index: int,
                    whole: float | None) -> float | None:
        """How long target `index` has to answer: the transaction's whole time (`whole`;
        None: Timer F) for the last or only target, at most the trunk's failover_after for
        one with another after it."""
        if index == len(targets) - 1:
            return whole
        limit = whole if whole is not None else 64 * self.agent.settings.t1
        return min(limit, self.timers.failover_after)

    def options_uri(self, address: str) -> str:
        """With an outbound proxy, the Request-URI of OPTIONS to the provider at `address`
        (host[:port]): the request goes to the proxy, with a Route naming it, and the
        proxy takes it on there (RFC 3261 loose routing, as REGISTER and calls); "" without
        a proxy (the OPTIONS asks the destination itself)."""
        if not self.spec.settings.get("outbound_proxy"):
            return ""
        transport = str(self.spec.settings.get("transport") or "udp")
        return f"sip:{address}" + ("" if transport == "udp" else f";transport={transport}")

    def options_hop(self, address: str) -> str:
        """Where OPTIONS to the provider at `address` are sent: its outbound proxy, if
        it has one."""
        return first_hop(self.spec.settings) if self.options_uri(address) else address

    async def ask(self, destination: Destination, timeout: float | None = None,
                  uri: str = "") -> tuple[Response, float]:
        """One OPTIONS to `destination`, about `uri` when it goes through the outbound
        proxy (options_uri): the answer and when the request was sent."""
        public = self.public(destination)
        request = self._options(destination, public, uri)
        sent = time.monotonic()
        response = await self.agent.send(
            request, self.own(destination),
            self.agent.settings.options_timeout if timeout is None else timeout,
            sent_by=public)
        return response, sent

    def answered(self, peer: _Peer, response: Response, sent: float) -> None:
        """An answer to OPTIONS: one in the trunk's ok codes (2xx) counts toward up, any
        other toward down, shown with its code and reason."""
        peer.rtt_ms = (time.monotonic() - sent) * 1000
        if not self.timers.answer_ok(response.status):
            self.missed(peer, response.status, response.reason)
            return
        self.agent.counters.options_answered += 1
        self.last_success = time.monotonic()
        peer.misses, peer.answers = 0, peer.answers + 1
        peer.code, peer.reason = response.status, response.reason
        if peer.up is not True and peer.answers >= self.timers.up_after:
            self._flip(peer, True)

    def missed(self, peer: _Peer, code: int, reason: str) -> None:
        """No answer (code 0), or one outside the ok codes."""
        self.agent.counters.options_missed += 1
        peer.answers, peer.misses = 0, peer.misses + 1
        peer.code, peer.reason = code, reason
        if peer.up is not False and peer.misses >= self.timers.down_after:
            self._flip(peer, False)
        elif peer.up is None:
            self._summary()

    def _flip(self, peer: _Peer, up: bool) -> None:
        peer.up = up
        peer.since = datetime.now(UTC)
        kind = "peer" if self.spec.settings.get("type") == "peer" else "provider"
        why = peer.reason if peer.code == 0 else f"answered {peer.code} {peer.reason}"
        log.info("trunk %s: %s %s %s", self.label, kind, peer.address,
                 "up" if up else f"down ({why})")
        self._summary()

    def _options(self, destination: Destination, public: tuple[str, int] | None,
                 uri: str = "") -> Request:
        assert self.agent.transport is not None
        host, port = public or self.agent.transport.local_address(destination)
        target = uri or f"sip:{destination.host}:{destination.port}"
        shown = f"[{host}]" if ":" in host else host
        return Request(method="OPTIONS", uri=target, headers=[
            ("Max-Forwards", "70"),
            ("From", f"<sip:trunkplane@{shown}:{port}>;tag={new_tag()}"),
            ("To", f"<{target}>"), ("Call-ID", f"{new_tag()}{new_tag()}@trunkplane"),
            ("CSeq", "1 OPTIONS"), ("Accept", "application/sdp"),
            ("User-Agent", USER_AGENT), *(proxy_route(self.spec.settings) if uri else [])])


@dataclass
class _Line:
    """One registration of a trunk (an account trunk has several: distinct Contacts)."""

    index: int
    call_id: str
    tag: str
    cseq: int = 0
    state: TrunkState = TrunkState.REGISTERING
    code: int = 0
    reason: str = ""
    expires_at: datetime | None = None
    contact: str = ""
    failures: int = 0
    destination: Destination | None = None
    target: str = ""  # the destination, as located (RFC 3263), for the status
    challenge: Any = None
    public: tuple[str, int] | None = None  # the NAT address shown in Contact and Via
    bound: str = ""  # the Contact the registrar last accepted
    wake: asyncio.Event | None = None  # set: register again now (the NAT mapping moved)
    remaps: int = 0  # re-registrations in a row for a new mapping (bounded)


class _RegisterWorker(_Worker):
    def __init__(self, agent: SipAgent, spec: TrunkSpec) -> None:
        super().__init__(agent, spec)
        count = int(spec.settings.get("max_registrations") or 1)
        if spec.settings.get("type") != "account":
            count = 1
        self.lines = [_Line(i, f"{new_tag()}{new_tag()}@trunkplane", new_tag())
                      for i in range(count)]
        if self.nat.get("enabled") and not self.nat.get("external_ip"):
            for line in self.lines:  # the public address may move under it
                line.wake = asyncio.Event()
        s = spec.settings
        self.user = str(s.get("username") or "")
        self.domain = str(s.get("from_domain") or parse_host_port(str(s["host"])).host)
        self.digest = DigestClient(str(s.get("auth_id") or self.user), str(s.get("password")
                                                                            or ""))
        self._holds: list[asyncio.Task[None]] = []
        self._uuid = uuid5(NAMESPACE_URL, f"trunkplane:trunk:{spec.trunk_id}")  # _instance

    def start(self, first: bool) -> None:
        spread = self.agent.settings.startup_spread if first else 0.0
        self._holds = [asyncio.ensure_future(self._hold(line, spread)) for line in self.lines]
        self._tasks = list(self._holds)
        if self.timers.qualify:
            self._tasks.append(asyncio.ensure_future(self._qualify()))

    async def _qualify(self) -> None:
        """OPTIONS to the registrar on the trunk's interval, the first one to two
        intervals after the start (the first REGISTER says whether it is there; spread at
        random so the trunks of an agent do not ask all at once): a provider that went
        away shows `unreachable` within down_after intervals instead of `registered` until
        the next refresh; when it answers again, every line registers at once (it may
        have lost our bindings meanwhile)."""
        interval = self.timers.options_interval
        await asyncio.sleep(interval + random.uniform(0, interval))
        while True:
            started = time.monotonic()
            destination = next((line.destination for line in self.lines
                                if line.destination is not None), None)
            if destination is not None:
                await self._qualify_once(destination)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _qualify_once(self, destination: Destination) -> None:
        peer = self.peers.get(str(destination))
        if peer is None:  # the registration moved to another target: only it counts
            peer = _Peer(str(destination))
            self.peers = {peer.address: peer}
        was = peer.up
        self.agent.counters.options_sent += 1
        try:
            await self.mapped()
            response, sent = await self.ask(
                destination, uri=self.options_uri(str(self.spec.settings.get("host") or "")))
        except TransportError as error:
            self.missed(peer, 0, str(error))
            return
        self.answered(peer, response, sent)
        if was is False and peer.up:
            self._register_now()

    def _register_now(self) -> None:
        """Every line registers again now instead of at its next refresh."""
        for task in self._holds:
            task.cancel()
        self._tasks = [t for t in self._tasks if t not in self._holds]
        self._holds = [asyncio.ensure_future(self._hold(line, 0.0)) for line in self.lines]
        self._tasks += self._holds

    async def stop(self, unregister: bool) -> None:
        await super().stop(unregister)
        if unregister:
            await self.unregister()

    async def unregister(self) -> None:
        await asyncio.gather(*(self._unregister(line) for line in self.lines
                               if line.state == TrunkState.REGISTERED),
                             return_exceptions=True)

    def _summary(self) -> None:
        up = sum(1 for line in self.lines if line.state == TrunkState.REGISTERED)
        worst = next((line for line in self.lines if line.state != TrunkState.REGISTERED),
                     None)
        if worst is None:
            state, code, reason = TrunkState.REGISTERED, self.lines[0].code, self.lines[0].reason
        elif up:
            state, code, reason = TrunkState.DEGRADED, worst.code, worst.reason
        else:
            state, code, reason = worst.state, worst.code, worst.reason
        contacts = tuple(ContactStatus(line.contact, line.expires_at) for line in self.lines
                         if line.state == TrunkState.REGISTERED)
        targets = dict.fromkeys(line.target for line in self.lines if line.target)
        qualified = next(iter(self.peers.values()), None)
        if qualified is not None and qualified.up is False and up:
            state, code = TrunkState.UNREACHABLE, qualified.code
            reason = (f"no answer to OPTIONS ({qualified.reason})" if not qualified.code else
                      f"OPTIONS answered {qualified.code} {qualified.reason}")
        self.report(state, sip_code=code, reason=reason, registrations_up=up,
                    registrations_wanted=len(self.lines), contacts=contacts,
                    target=", ".join(targets),
                    peers=tuple(PeerStatus(p.address, bool(p.up), p.rtt_ms, p.since)
                                for p in self.peers.values()))

    async def _hold(self, line: _Line, spread: float) -> None:
        timers = self.timers
        if spread:
            await asyncio.sleep(random.uniform(0, spread))
        line.state = TrunkState.REGISTERING
        self._summary()
        while True:
            if line.wake is not None:
                line.wake.clear()
            wait = await self._attempt(line)
            self._summary()
            await self._nap(line, wait if wait is not None else backoff(
                line.failures, timers.backoff_base, timers.backoff_cap))

    @staticmethod
    async def _nap(line: _Line, seconds: float) -> None:
        """Sleeps until the next attempt, or until the NAT mapping moves."""
        if line.wake is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await line.wake.wait()

    def remapped(self, old: Mapping | None, new: Mapping) -> None:
        for line in self.lines:
            if line.wake is not None and line.public is not None and \
                    line.public != (new.host, new.port):
                log.info("trunk %s: public address now %s (was %s:%d): registering again",
                         self.label, new, *line.public)
                line.wake.set()

    async def _attempt(self, line: _Line) -> float | None:
        """One registration attempt; returns how long to wait before the next one (None:
        the capped back-off)."""
        timers = self.timers
        expires = timers.registration_expiry
        try:
            await self.mapped()
            response = await self._register_located(line, expires)
        except TransportError as error:
            return self._failed(line, TrunkState.UNREACHABLE, 0, str(error))
        self.agent.counters.registers_sent += 1
        if response.status < 300:
            granted = self._granted(response, line, expires)
            line.state, line.code, line.reason = TrunkState.REGISTERED, response.status, \
                response.reason
            line.failures = 0
            line.bound = line.contact
            self._warned = None  # the next failure is news again
            line.expires_at = datetime.now(UTC) + timedelta(seconds=granted)
            self.agent.counters.registrations_ok += 1
            self.last_success = time.monotonic()
            for peer in self.peers.values():  # the registrar answered: it is there
                if peer.up is False:
                    peer.misses = 0
                    self._flip(peer, True)
            moved = self._moved(line)
            return moved if moved is not None else refresh_after(granted)
        retry_after = _retry_after(response)
        if response.status in (401, 407):
            return self._failed(line, TrunkState.AUTH_FAILED, response.status, response.reason)
        if response.status == 403:
            self._failed(line, TrunkState.FORBIDDEN, response.status, response.reason)
            return random.uniform(timers.backoff_cap / 2, timers.backoff_cap)
        if response.status >= 500 and retry_after is not None:
            self._failed(line, TrunkState.FAILED, response.status, response.reason)
            return float(retry_after)
        return self._failed(line, TrunkState.FAILED, response.status, response.reason)

    def _moved(self, line: _Line) -> float | None:
        """0 when the registrar's answer showed another public address than the one just
        registered (rport: the NAT maps us elsewhere): register again at once with it,
        at most twice in a row; None otherwise."""
        assert line.destination is not None
        now = self.public(line.destination)
        if line.wake is None or now is None or now == line.public or line.remaps >= 2:
            line.remaps = 0
            return None
        line.remaps += 1
        log.info("trunk %s: the registrar sees us at %s:%d: registering that address",
                 self.label, *now)
        return 0.0

    async def _register_located(self, line: _Line, expires: int) -> Response:
        """RFC 3263 4.3: the targets in order, the next one after a timeout, a transport
        error or a 503; the one in use stays first while it is among the best. A target
        that is not the last has the trunk's failover_after to answer, the last the whole
        transaction (Timer F)."""
        transport = str(self.spec.settings.get("transport", "udp"))
        targets = sticky(await self.agent.locate(first_hop(self.spec.settings), transport),
                         line.destination)
        failure: TransportError | None = None
        unavailable: tuple[Response, Destination, str] | None = None
        for index, target in enumerate(targets):
            line.destination, line.target = target.destination, str(target)
            try:
                response = await self._register(line, expires,
                                                self._per_target(targets, index, None))
            except TransportError as error:
                failure = error
                continue
            if response.status != 503:
                return response
            unavailable = unavailable or (response, target.destination, str(target))
        if unavailable is not None:  # the status names the target whose 503 it shows
            response, line.destination, line.target = unavailable
            return response
        assert failure is not None
        raise none_answered(targets, failure)

    def _failed(self, line: _Line, state: TrunkState, code: int, reason: str) -> float | None:
        """Records a failed attempt; None: wait the capped back-off."""
        line.failures += 1
        line.state, line.code, line.reason = state, code, reason
        line.expires_at = None
        key = state.value
        failures = self.agent.counters.registration_failures
        failures[key] = failures.get(key, 0) + 1
        self.warn_once(state, code, reason)
        return None

    async def _register(self, line: _Line, expires: int,
                        timeout: float | None = None) -> Response:
        """REGISTER, answering one challenge (and a stale nonce once more), and 423 with
        the registrar's Min-Expires; `timeout`: each transaction's (None: Timer F)."""
        assert line.destination is not None
        answered = 0
        interval_retries = 0
        authorization: tuple[str, str] | None = None
        while True:
            request = self._request(line, expires, authorization)
            response = await self.agent.send(request, self.own(line.destination), timeout,
                                             sent_by=line.public)
            if response.status in (401, 407):
                header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
                try:
                    challenge = parse_challenge(response.get(header), proxy=response.status == 407)
                except SipParseError:
                    return response
                stale_retry = challenge.stale and answered == 1
                if answered and not stale_retry:
                    return response  # the credentials were refused: never loop
                answered += 1
                authorization = (challenge.header, self.digest.answer(
                    challenge, "REGISTER", request.uri))
                continue
            if response.status == 423 and interval_retries < 3:
                minimum = response.get("min-expires")
                if minimum.isascii() and minimum.isdigit() and int(minimum) > expires:
                    expires = int(minimum)
                    interval_retries += 1
                    continue
            return response

    def _request(self, line: _Line, expires: int,
                 authorization: tuple[str, str] | None) -> Request:
        assert line.destination is not None and self.agent.transport is not None
        line.public = self.public(line.destination)
        host, port = line.public or self.agent.transport.local_address(line.destination)
        transport = line.destination.transport
        params = "" if transport == "udp" else f";transport={transport}"
        shown_host = f"[{host}]" if ":" in host else host
        line.contact = (f"sip:{self.user}@{shown_host}:{port}{params}"
                        f";line={self.spec.trunk_id[:8]}{line.index}")
        if expires == 0 and line.bound:
            line.contact = line.bound  # remove what the registrar holds
        line.cseq += 1
        # From and To: the address of record, whatever the trunk's From user (RFC 3261
        # 10.2: To names the AOR whose bindings change, From who asks; for a trunk both
        # are the account, as Asterisk PJSIP's client_uri; registrars check them against
        # the credentials). The From user is the caller identity of calls (B2BUA).
        aor = f"<sip:{self.user}@{self.domain}>"
        headers = [("Max-Forwards", "70"), ("From", f"{aor};tag={line.tag}"), ("To", aor),
                   ("Call-ID", line.call_id), ("CSeq", f"{line.cseq} REGISTER"),
                   ("Contact", f"<{line.contact}>{self._instance(line, expires)}"),
                   ("Expires", str(expires)), ("Allow", "OPTIONS"),
                   ("User-Agent", USER_AGENT), *proxy_route(self.spec.settings)]
        if expires and line.bound and line.bound != line.contact:
            # the NAT moved us: the old Contact goes in the same request (RFC 3261 10.2.2)
            headers.insert(6, ("Contact", f"<{line.bound}>;expires=0"))
        if authorization is not None:
            headers.append(authorization)
        return Request(method="REGISTER", uri=self._registrar(), headers=headers)

    def _registrar(self) -> str:
        """The Request-URI: the From domain, else the trunk's host as written (its port
        too: a proxy on the way routes by it)."""
        s = self.spec.settings
        return f"sip:{s.get('from_domain') or s['host']}"

    def _instance(self, line: _Line, expires: int) -> str:
        """RFC 5626 +sip.instance and reg-id, derived from the trunk and the line, not the
        agent: whichever agent registers the trunk, the registrar sees one instance and
        replaces its binding instead of adding one (a rebalance or a crash leaves no
        duplicate). An unREGISTER leaves them out, so it removes only this agent's own
        Contact, never the binding a new owner has registered meanwhile."""
        if expires == 0:
            return ""
        return f';+sip.instance="<urn:uuid:{self._uuid}>";reg-id={line.index + 1}'

    def _granted(self, response: Response, line: _Line, asked: int) -> int:
        """The expiry the registrar granted our Contact (its `expires` parameter, else the
        Expires header, else what we asked)."""
        mine = line.contact.lower()
        for contact in response.all("contact"):
            uri = contact[contact.find("<") + 1:contact.find(">")] if "<" in contact else \
                contact.split(";")[0]
            if uri.strip().lower() != mine:
                continue
            for param in split_list(contact[contact.find(">") + 1:] if ">" in contact else
                                    ";".join(contact.split(";")[1:]), ";"):
                name, _, value = param.partition("=")
                value = value.strip()
                if name.strip().lower() == "expires" and value.isascii() and value.isdigit():
                    return int(value)
        header = response.get("expires")
        return int(header) if header.isascii() and header.isdigit() else asked

    async def _unregister(self, line: _Line) -> None:
        if line.destination is None:
            return
        try:
            await self._register(line, 0)
            self.agent.counters.unregisters += 1
        except TransportError as error:
            log.info("trunk %s: unREGISTER failed: %s", self.label, error)
        line.state = TrunkState.UNREGISTERED
        line.bound = ""


@dataclass
class _Peer:
    address: str
    up: bool | None = None
    answers: int = 0
    misses: int = 0
    rtt_ms: float | None = None
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    code: int = 0
    reason: str = ""
    target: str = ""


class _PeerWorker(_Worker):
    def __init__(self, agent: SipAgent, spec: TrunkSpec) -> None:
        super().__init__(agent, spec)
        addresses = list(spec.settings.get("peer_addresses") or [])
        if not addresses and spec.settings.get("host"):
            addresses = [str(spec.settings["host"])]
        self.peers = {a: _Peer(a) for a in addresses}

    def start(self, first: bool) -> None:
        spread = min(self.agent.settings.startup_spread, self.timers.options_interval)
        self._tasks = [asyncio.ensure_future(self._watch(peer, spread if first else 0.0))
                       for peer in self.peers.values()]

    async def _watch(self, peer: _Peer, spread: float) -> None:
        if spread:
            await asyncio.sleep(random.uniform(0, spread))
        while True:
            started = time.monotonic()
            await self._probe(peer)
            await asyncio.sleep(max(0.0, self.timers.options_interval - (time.monotonic()
                                                                          - started)))

    async def _probe(self, peer: _Peer) -> None:
        transport = str(self.spec.settings.get("transport", "udp"))
        self.agent.counters.options_sent += 1
        try:
            await self.mapped()
            response, sent = await self._ask(peer, transport)
        except TransportError as error:
            self.missed(peer, 0, str(error))
            return
        self.answered(peer, response, sent)

    async def _ask(self, peer: _Peer, transport: str) -> tuple[Response, float]:
        """OPTIONS to the address's targets (RFC 3263) in turn until one answers: the
        answer and when the answered request was sent."""
        failure: TransportError | None = None
        unavailable: tuple[Response, float, str] | None = None
        uri = self.options_uri(peer.address)  # with a proxy, to the proxy about the peer
        targets = await self.agent.locate(self.options_hop(peer.address), transport)
        whole = self.agent.settings.options_timeout
        for index, target in enumerate(targets):
            try:
                response, sent = await self.ask(target.destination,
                                                self._per_target(targets, index, whole), uri)
            except TransportError as error:
                failure = error
                continue
            if response.status == 503:  # RFC 3263 4.3: the next target, as for no answer
                unavailable = unavailable or (response, sent, str(target))
                continue
            peer.target = str(target)
            return response, sent
        if unavailable is not None:  # every target refused or was silent: the 503 it gave
            peer.target = unavailable[2]
            return unavailable[0], unavailable[1]
        assert failure is not None
        raise none_answered(targets, failure)

    def _summary(self) -> None:
        peers = list(self.peers.values())
        up = [p for p in peers if p.up]
        first = next((p for p in peers if p.up), None)
        if up:
            state = TrunkState.OK
            code, reason = first.code if first else 0, f"using {first.address}" if first else ""
        elif any(p.up is None for p in peers):
            state, code, reason = TrunkState.REGISTERING, 0, "probing"
        else:  # the provider's words when it answered, else the transport's
            last = peers[0] if peers else None
            state, code = TrunkState.UNREACHABLE, last.code if last else 0
            reason = last.reason if last else ""
        self.report(state, sip_code=code, reason=reason, target=first.target if first else "",
                    peers=tuple(PeerStatus(p.address, bool(p.up), p.rtt_ms, p.since)
                                for p in peers))


def none_answered(targets: Sequence[Target], last: TransportError) -> TransportError:
    """The failure when every target of several failed at the transport: how many were
    tried, and the last one's error (doctor explains it)."""
    if len(targets) < 2:
        return last
    return TransportError(f"none of the {len(targets)} servers located answered "
                          f"({', '.join(str(t.destination) for t in targets)}); the last: {last}")


def _retry_after(response: Response) -> int | None:
    value = response.get("retry-after").split(";")[0].split("(")[0].strip()
    return int(value) if value.isascii() and value.isdigit() else None


