"""The agent's desired state under a feed that delivers late, twice and out of order (a
broker emptied and refilled, redeliveries), and across rebalances."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from domain import commands
from domain.application import TrunkplaneApp
from domain.feeds import PUBLISHED, FeedItem, VersionGate
from domain.model import CommandMeta
from sipagent.state import AgentState

META = CommandMeta(actor="alice")
VOCO: dict[str, Any] = {"name": "voco", "username": "1001", "password": "s3cret-password-xyz"}



def history(app: TrunkplaneApp, tenants: int = 3) -> list[FeedItem]:
    """Every published event of a few tenants' trunks, routes and policy, in log order."""
    def run(command: Any, *args: Any) -> None:
        def step(uow: Any) -> Any:
            return command(uow, *args)
        app.execute(step).unwrap()

    route = {"dial_patterns": [{"match": "NXXNXXXXXX"}], "trunks": [{"trunk_id": "voco"}]}
    for n in range(tenants):
        tenant = f"t{n}"
        for name in ("voco", "backup"):
            run(commands.create_trunk, tenant, {**VOCO, "name": name}, "thevoco", META)
        for patch in ({"codecs": ["PCMA", "PCMU"]}, {"enabled": False}, {"enabled": True},
                      {"username": "2002"}, {"description": "main line"}):
            run(commands.update_trunk, tenant, "voco", patch, "", META)
        for name in ("us", "intl"):  # each changes the route order
            run(commands.create_outbound_route, tenant, {**route, "name": name}, None, META)
        run(commands.delete_trunk, tenant, "backup", "", META)
    items = []
    for note in app.recorder.select_notifications(0, 10_000):
        event = app.mapper.to_domain_event(note)
        if type(event) in PUBLISHED:
            tenant = str(getattr(event, "tenant", "") or getattr(
                app.repository.get(event.originator_id), "tenant", ""))
            items.append(FeedItem(note.id, tenant, event, partition=int(tenant[1:])))
    return items


def final(state: AgentState) -> dict[str, tuple[Any, ...]]:
    snapshots = {t: state.tenant(t) for t in state.tenants()}
    return {t: (s.trunks, s.outbound, s.outbound_order) for t, s in snapshots.items()
            if s is not None}


def test_an_update_delivered_before_its_create_waits_for_it(app: TrunkplaneApp) -> None:
    items = history(app, 1)
    voco = [i for i in items if i.event.originator_id == items[0].event.originator_id]
    created, changed = voco[0], voco[1]
    state = AgentState()
    assert state.apply([changed]) == 0 and state.held == 1 and state.skipped == 0
    assert state.apply([created]) == 2 and state.held == 0  # the create, then the update
    trunk = next(iter(final(state)["t0"][0].values()))
    assert trunk["codecs"] == ["PCMA", "PCMU"]
    assert state.apply([changed, created]) == 0 and state.skipped == 2  # now duplicates


@pytest.mark.parametrize("seed", range(20))
def test_any_order_with_duplicates_ends_in_the_same_state(app: TrunkplaneApp,
                                                          seed: int) -> None:
    items = history(app)
    in_order = AgentState()
    in_order.apply(items)
    shuffled = items + random.Random(seed).sample(items, len(items) // 2)  # duplicates
    random.Random(seed).shuffle(shuffled)
    state = AgentState()
    for start in range(0, len(shuffled), 3):  # in small batches, as a feed delivers
        state.apply(shuffled[start:start + 3])
    assert final(state) == final(in_order) and state.held == 0
    assert in_order.applied == len(items)  # (an older route order after a newer: skipped)
    assert len(final(state)) == 3
    assert all(len(trunks) == 1 and len(routes) == len(order) == 2
               for trunks, routes, order in final(state).values())


def test_the_newest_route_order_and_policy_win_whatever_came_between() -> None:
    gate = VersionGate(lambda event: True)  # as for the catalog's order and policy

    class Order:
        def __init__(self, version: int) -> None:
            self.originator_id, self.originator_version = "catalog", version

    taken = []
    for version in (5, 3, 9, 9, 7):
        for ready in gate.release(version, Order(version)):
            gate.applied(Order(version))
            taken.append(ready)
    assert taken == [5, 9]


def test_a_rebalance_keeps_the_tenants_assigned_again_and_releases_the_rest(
        app: TrunkplaneApp) -> None:
    released: list[str] = []
    changed: list[tuple[str, Any]] = []
    state = AgentState(lambda tenant, trunk, settings: changed.append((tenant, settings)),
                       lambda tenant, trunk: released.append(tenant))
    state.apply(history(app))
    changed.clear()
    state.revoked([0, 1, 2])  # eager rebalance: every partition revoked first
    assert state.tenants() == ["t0", "t1", "t2"] and not released
    assert state.assigned([0, 2]) == ["t1"]
    assert released == ["t1"] and changed == []  # released, never unregistered
    assert state.tenants() == ["t0", "t2"]
    state.revoked([0, 2])
    assert state.assigned([0, 2, 1]) == [] and not changed


def test_admission_reads_do_not_wait_for_a_batch_in_progress(app: TrunkplaneApp) -> None:
    """Admission runs on the asyncio server's event loop; the feed holds the state's lock
    for a whole batch or restore, and waiting for it froze every call of the server."""
    state = AgentState()
    state.apply(history(app, 1))
    read: list[tuple[Any, list[str]]] = []
    done = threading.Event()

    def admit() -> None:
        read.append((state.tenant("t0"), state.tenants()))
        done.set()

    with state._lock:  # a batch in progress on the feed's thread
        threading.Thread(target=admit, daemon=True).start()
        assert done.wait(10), "the reads waited for the batch"
    assert read[0][0] is not None and read[0][1] == ["t0"]
