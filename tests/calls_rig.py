"""An agent with its B2BUA for the calls tests and benchmark: a tenant's trunks and routes
in an in-memory store, folded into the agent's state as the feed would; the SIP engine
(provider face) and the PBX face on free loopback ports; call records kept in memory."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from domain import commands
from domain.application import TrunkplaneApp
from domain.calls import MemoryCallRecords, PbxAccess, PbxTarget, StaticPbxDirectory
from domain.feeds import MemoryPositions, StoreEventFeed
from domain.model import CommandMeta
from domain.status import StatusObservation, TrunkState
from sipagent.admission import Admission
from sipagent.calls.b2bua import B2BUA
from sipagent.engine import SipAgent
from sipagent.settings import CallSettings, SipSettings
from sipagent.state import AgentState

META = CommandMeta(actor="test", reason="", request_id="")
ANY = [{"match": ".", "prefix": "", "prepend": ""}]


class Sink:
    def __init__(self) -> None:
        self.seen: list[StatusObservation] = []

    def publish(self, observations: Sequence[StatusObservation]) -> None:
        self.seen += observations


class Rig:
    def __init__(self, tenant: str = "acme", access: PbxAccess | None = None,
                 sip: dict[str, Any] | None = None, **calls: Any) -> None:
        self.tenant = tenant
        self.app = TrunkplaneApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        self.feed = StoreEventFeed(self.app, "agent", MemoryPositions())
        self.engine = SipAgent(SipSettings(**{
            "agent_id": "test-agent", "listen_port": 0, "t1": 0.1, "startup_spread": 0.0,
            "backoff_base": 0.3, "backoff_max": 2.0, "options_interval": 0.5,
            "options_timeout": 0.5, "destinations": ("127.0.0.0/8",), "tcp_port": 0,
            **(sip or {})}),
            Sink())
        self.state = AgentState(on_trunk=self.engine.update)
        self.engine.start()
        self.admission = Admission(self.state, self.engine.live_state, ttl=30.0)
        self.records = MemoryCallRecords()
        self.directory = StaticPbxDirectory([access or PbxAccess(
            tenant, ("127.0.0.0/8",))])
        self.b2bua = B2BUA(CallSettings(**{
            "agent_id": "test-agent", "pbx_port": 0, "t1": 0.1, "provider_timeout": 1.5,
            "ring_timeout": 5.0, "probe_interval": 1.0, **calls}),
            self.admission, self.directory, self.records, self.engine)
        self.engine.run(self.b2bua.open())

    @property
    def pbx_address(self) -> tuple[str, int]:
        assert self.b2bua.pbx is not None
        return "127.0.0.1", self.b2bua.pbx.transport.listen_port

    @property
    def provider_address(self) -> tuple[str, int]:
        assert self.engine.transport is not None
        return "127.0.0.1", self.engine.transport.listen_port

    def targets(self, *uris: str) -> None:
        current = self.directory.accesses[0]
        self.directory.accesses[0] = PbxAccess(
            current.tenant, current.source_cidrs, current.username, current.password,
            tuple(PbxTarget(u, priority=i) for i, u in enumerate(uris)))

    def trunk(self, name: str, **fields: Any) -> str:
        raw = {"name": name, "type": "peer", "codecs": ["PCMU", "PCMA"], **fields}
        done = self.app.execute(partial(commands.create_trunk, tenant=self.tenant, raw=raw,
                                        template="", meta=META)).unwrap()
        self.sync()
        return str(done.aggregate.id)

    def route(self, name: str, trunks: list[str], patterns: list[dict[str, str]] | None = None,
              strategy: str = "failover") -> str:
        done = self.app.execute(partial(
            commands.create_outbound_route, tenant=self.tenant, position=None, meta=META,
            raw={"name": name, "dial_patterns": patterns or ANY,
                 "trunks": [{"trunk_id": t} for t in trunks], "strategy": strategy,
                 "allowed_extensions": []})).unwrap()
        self.sync()
        return str(done.aggregate.id)

    def inbound(self, did: str, destination: str, trunk: str = "",
                caller: str = "") -> None:
        self.app.execute(partial(commands.create_inbound_route, tenant=self.tenant, meta=META,
                                 raw={"did_pattern": did, "destination": destination,
                                      "trunk_id": trunk, "caller_id_pattern": caller})
                         ).unwrap()
        self.sync()

    def sync(self) -> None:
        self.state.apply(self.feed.read(timeout=0))

    def wait_live(self, trunk_id: str, timeout: float = 10.0) -> None:
        wait_for(lambda: self.engine.live_state(trunk_id) in (
            TrunkState.OK, TrunkState.REGISTERED), timeout, f"trunk {trunk_id} up")

    def channels(self, trunk_id: str) -> tuple[int, int]:
        return self.admission.active(trunk_id)

    def close(self) -> None:
        self.engine.run(self.b2bua.close())
        self.engine.stop()


def wait_for(test: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
