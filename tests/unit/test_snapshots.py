"""An agent's snapshots (what it writes to the state topic) against its history: a new
owner that restores them and reads only the events from the recorded position ends in
the state of one that read everything, with every event applied once, wherever the cut
falls; passwords travel sealed; a position never passes an event still waiting."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from domain import commands
from domain.application import TrunkplaneApp
from domain.feeds import PUBLISHED, AggregateState, FeedItem, StatePosition
from domain.model import CommandMeta
from infra.messaging.codec import AvroCodec
from infra.security.sealing import WireCipher
from sipagent.state import AgentState

META = CommandMeta(actor="alice")
PASSWORD = "s3cret-password-xyz"
PBX_PASSWORD = "pbx-digest-secret-123"
CODEC = AvroCodec(WireCipher("w1:" + WireCipher.new_key()))



def run(app: TrunkplaneApp, command: Any, *args: Any) -> None:
    app.execute(lambda uow: command(uow, *args)).unwrap()


def history(app: TrunkplaneApp, tenants: int = 4) -> list[FeedItem]:
    """Trunks, routes, a policy and a PBX per tenant, changed and deleted, as the events
    topic carries them: tenant n on partition n % 2, offsets counted per partition."""
    route = {"dial_patterns": [{"match": "NXXNXXXXXX"}], "trunks": [{"trunk_id": "voco"}]}
    for n in range(tenants):
        tenant = f"t{n}"
        for name in ("voco", "backup"):
            run(app, commands.create_trunk, tenant,
                {"name": name, "username": "1001", "password": PASSWORD}, "thevoco", META)
        run(app, commands.update_pbx, tenant, {"source_cidrs": [f"10.{n}.0.0/16"],
            "username": f"pbx-{n}", "password": PBX_PASSWORD}, "", META)
        for patch in ({"codecs": ["PCMA", "PCMU"]}, {"enabled": False}, {"enabled": True},
                      {"username": "2002"}, {"description": "main line"}):
            run(app, commands.update_trunk, tenant, "voco", patch, "", META)
        for name in ("us", "intl"):
            run(app, commands.create_outbound_route, tenant, {**route, "name": name}, None,
                META)
        run(app, commands.update_tenant_policy, tenant,
            {"guard": {"max_calls_per_minute": 10 + n}}, META)
        run(app, commands.delete_trunk, tenant, "backup", "", META)
        run(app, commands.update_pbx, tenant, {"targets": [{"uri": "sip:pbx.example.com"}]},
            "", META)
    items: list[FeedItem] = []
    offsets = [0, 0]
    for note in app.recorder.select_notifications(0, 10_000):
        event = app.mapper.to_domain_event(note)
        if type(event) in PUBLISHED:
            tenant = str(getattr(event, "tenant", "") or getattr(
                app.repository.get(event.originator_id), "tenant", ""))
            partition = int(tenant[1:]) % 2
            items.append(FeedItem(note.id, tenant, event, partition, offsets[partition]))
            offsets[partition] += 1
    return items


def final(state: AgentState) -> dict[str, Any]:
    return {t: (s.trunks, s.outbound, s.inbound, s.outbound_order, s.policy, s.pbx)
            for t in state.tenants() if (s := state.tenant(t)) is not None}


class Topic:
    """The state topic as records in order; read back as an agent reads it."""

    def __init__(self) -> None:
        self.records: list[tuple[int, bytes, bytes]] = []

    def write(self, state: AgentState) -> None:
        states, positions = state.changes()
        self.records += [(p, str(s.aggregate_id).encode(), CODEC.encode_state(s))
                         for p, s in states]
        self.records += [(p.partition, b"position", CODEC.encode_position(p))
                         for p in positions]
        state.written(positions)

    def restore(self, into: AgentState, partitions: list[int]) -> dict[int, int]:
        newest: dict[bytes, tuple[int, AggregateState]] = {}
        positions: dict[int, int] = {}
        for partition, key, payload in self.records:
            value = CODEC.decode(payload).value
            if isinstance(value, StatePosition):
                positions[partition] = value.offset
            elif key not in newest or newest[key][1].version <= value.version:
                newest[key] = (partition, value)
        for p in partitions:
            into.restore(p, [s for q, s in newest.values() if q == p], positions.get(p))
        return positions


def tracked() -> AgentState:
    state = AgentState(track=True)
    state.assigned([0, 1])
    return state


def after(items: list[FeedItem], positions: dict[int, int]) -> list[FeedItem]:
    return [i for i in items if i.offset >= positions.get(i.partition, 0)]


def test_every_cut_restores_the_same_state_applying_each_event_once(
        app: TrunkplaneApp) -> None:
    items = history(app)
    whole = AgentState()
    assert whole.apply(items) == len(items)
    for cut in range(0, len(items) + 1, 3):
        writer, topic = tracked(), Topic()
        for start in range(0, cut, 5):  # written in several rounds, as the agent does
            writer.apply(items[start:min(start + 5, cut)])
            topic.write(writer)
        owner = AgentState()
        positions = topic.restore(owner, [0, 1])
        rest = after(items, positions)
        assert owner.apply(rest) == len(rest) and owner.skipped == 0, cut
        assert final(owner) == final(whole), cut
        assert len(rest) == len(items) - cut


def test_a_snapshot_ahead_of_its_position_skips_the_events_it_holds(
        app: TrunkplaneApp) -> None:
    """A crash between the snapshots and their position: the next owner reads events the
    snapshots already reflect, and applies none of them twice."""
    items = history(app)
    writer, topic = tracked(), Topic()
    writer.apply(items[:20])
    topic.write(writer)
    writer.apply(items[20:40])
    states, _ = writer.changes()  # written; the position never was
    topic.records += [(p, str(s.aggregate_id).encode(), CODEC.encode_state(s))
                      for p, s in states]
    owner = AgentState()
    positions = topic.restore(owner, [0, 1])
    rest = after(items, positions)
    assert len(rest) == len(items) - 20
    owner.apply(rest)
    assert final(owner) == final(whole(items))
    assert owner.applied + owner.skipped == len(rest) and owner.skipped > 0


def whole(items: list[FeedItem]) -> AgentState:
    state = AgentState()
    state.apply(items)
    return state


def test_the_position_waits_for_an_event_held_for_its_predecessor(
        app: TrunkplaneApp) -> None:
    """A log where a trunk's version 3 comes before its version 2 (a republish): the
    position stays at the held event, so the next owner reads it again."""
    items = [i for i in history(app) if i.partition == 0]
    voco = [i for i in items if i.event.originator_id == items[0].event.originator_id]
    log = [i for i in items if i is not voco[1]]
    log.insert(log.index(voco[2]) + 1, voco[1])
    log = [replace(item, offset=n) for n, item in enumerate(log)]
    third = next(n for n, i in enumerate(log) if i.event is voco[2].event)
    writer, topic = tracked(), Topic()
    writer.apply(log[:third + 1])
    assert writer.held == 1
    topic.write(writer)
    owner = AgentState()
    positions = topic.restore(owner, [0])
    assert positions == {0: third}  # not past the held one
    owner.apply(after(log, positions))
    assert owner.held == 0 and final(owner) == final(whole(items))


def test_passwords_travel_sealed_and_come_back(app: TrunkplaneApp) -> None:
    items = history(app, 1)
    writer = tracked()
    writer.apply(items)
    states, _ = writer.changes()
    payloads = [CODEC.encode_state(s) for _, s in states]
    assert not any(PASSWORD.encode() in p or PBX_PASSWORD.encode() in p for p in payloads)
    back = [CODEC.decode(p).value for p in payloads]
    assert back == [s for _, s in states]
    kinds = sorted(s.kind for s in back)
    assert kinds == ["catalog", "outbound", "outbound", "pbx", "trunk", "trunk"]
    assert next(s for s in back if s.kind == "pbx").settings["password"] == PBX_PASSWORD
    deleted = [s for s in back if s.kind == "trunk" and s.settings is None]
    assert len(deleted) == 1 and deleted[0].version > 1  # a deleted trunk keeps its version


def test_nothing_is_written_during_a_rebalance_and_lost_tenants_are_dropped(
        app: TrunkplaneApp) -> None:
    items = history(app)
    writer = tracked()
    writer.apply(items)
    writer.revoked([0, 1])
    assert writer.changes() == ([], [])  # kept for after it
    writer.assigned([1])
    states, positions = writer.changes()
    assert {p for p, _ in states} == {1} and [p.partition for p in positions] == [1]
    assert all(int(s.tenant[1:]) % 2 == 1 for _, s in states)


def test_a_batch_that_fails_half_applied_writes_no_snapshot_after_it(
        app: TrunkplaneApp) -> None:
    """The versions of a half-applied batch moved but its settings were lost: a snapshot
    then would carry new versions with old settings, which every later owner keeps."""
    items = history(app, tenants=1)
    calls = [0]

    def on_trunk(tenant: str, trunk_id: str, settings: Any) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("the SIP engine's loop is closed")

    state = AgentState(on_trunk, track=True)
    state.assigned([0, 1])
    with pytest.raises(RuntimeError):
        state.apply(items)
    assert state.broken and state.changes() == ([], [])


def test_owner_epochs_rise_with_the_fence_and_then_the_generation() -> None:
    from infra.messaging.state import owner_epoch

    first = owner_epoch(-1, 7)  # nothing marked yet (or written before epochs)
    kept = owner_epoch(-1, 8)  # the same owner, the group rebalanced
    successor = owner_epoch(first, 9)  # read the first owner's marker
    unmarked = owner_epoch(-1, 9)  # took over before the first owner marked anything
    restarted = owner_epoch(successor, 1)  # the group was made again: generations restart
    assert first < kept < unmarked < successor < restarted
    assert owner_epoch(-1, -1) < first  # not joined: the lowest of its fence
