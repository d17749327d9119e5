"""Open streams do not stall call admission (issue 16): more watchers than the unary calls
have threads, admission still answers, each watcher gets each change, and a principal's
streams beyond TRUNKPLANE_MAX_STREAMS_PER_CALLER are refused with RESOURCE_EXHAUSTED."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from domain.status import TrunkState
from projections import status_feed
from projections.db import SqliteDatabase
from projections.status import StatusView
from projections.status_feed import AsyncSubscription, StatusFeed, Subscription
from tests.conftest import Api, settings_for
from tests.integration.helpers import create_route, create_trunk
from tests.integration.test_admission_api import outbound, wait_for_agent
from tests.integration.test_status import observation
from trunkplane.v1 import agent_pb2, agent_pb2_grpc, trunk_pb2

WATCHERS = 100  # the unary calls have 32 threads: each watcher once held one of them
WORKERS = 32


@pytest.fixture
def crowded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    settings = replace(settings_for("sqlite", tmp_path, request), max_streams=WATCHERS + 20,
                       max_streams_per_caller=WATCHERS)
    client = Api(settings)
    yield client
    client.close()


def test_watchers_beyond_the_unary_threads_do_not_stall_admission(crowded: Api) -> None:
    api = crowded
    watched = create_trunk(api, "watched").trunk
    create_trunk(api, "carrier", type="peer", peer_addresses=["192.0.2.1"], password="",
                 username="")
    create_route(api, "us", ["carrier"])
    watcher = api.as_("wallboard@example.com", "auditor")
    streams: list[Any] = []
    try:
        for _ in range(WATCHERS):
            streams.append(api.trunks.WatchTrunkStatus(
                trunk_pb2.WatchTrunkStatusRequest(trunks=["watched"]), metadata=watcher,
                timeout=120))
        for stream in streams:  # each is open: it has sent the current picture
            assert next(stream).current
        assert WATCHERS > WORKERS

        stub = agent_pb2_grpc.AgentServiceStub(api.channel)
        for _ in range(5):  # admission answers while every watcher holds its stream
            lease = wait_for_agent(stub, outbound()).lease
            assert stub.ReleaseChannel(agent_pb2.ReleaseChannelRequest(
                lease_id=lease.lease_id), timeout=10).released

        api.plane.status_sink.publish([observation(watched.id, 1, TrunkState.REGISTERED)])
        api.plane.status_sink.publish([observation(watched.id, 2, TrunkState.FAILED,
                                                   sip_code=403, reason="Forbidden")])
        for stream in streams:  # every watcher, every change, in order
            assert [next(stream).status.state for _ in range(2)] == ["registered", "failed"]

        beyond = api.trunks.WatchTrunkStatus(trunk_pb2.WatchTrunkStatusRequest(),
                                             metadata=watcher, timeout=30)
        with pytest.raises(grpc.RpcError) as refused:
            next(beyond)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "TRUNKPLANE_MAX_STREAMS_PER_CALLER" in (refused.value.details() or "")
        other = api.trunks.WatchTrunkStatus(trunk_pb2.WatchTrunkStatusRequest(),
                                            metadata=api.as_("noc@example.com", "auditor"),
                                            timeout=30)
        assert next(other).current  # the cap is per principal
        streams.append(other)
    finally:
        for stream in streams:
            stream.cancel()
    deadline = time.monotonic() + 30
    while _watching(api) and time.monotonic() < deadline:  # each left when its client did
        time.sleep(0.05)
    assert _watching(api) == 0


def _watching(api: Api) -> int:
    assert api.plane.status_feed is not None
    return api.plane.status_feed.watchers()


def test_the_feed_fans_out_once_drops_a_watcher_too_far_behind_and_sweeps_the_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    view = StatusView(SqliteDatabase(tmp_path / "views.sqlite"))
    built: list[int] = []

    def prepare(tenant: str, position: int, observed: dict[str, Any]) -> int:
        built.append(position)
        return position

    feed: StatusFeed[int] = StatusFeed(view, prepare)
    alive = [True]
    try:
        monkeypatch.setattr(status_feed, "MAX_BACKLOG", 3)
        readers = [feed.subscribe("default", 0, frozenset()) for _ in range(2)]
        only_t2 = feed.subscribe("default", 0, frozenset({"t2"}))
        leaving = feed.subscribe("default", 0, frozenset({"t9"}), lambda: alive[0])
        view.publish([observation("t1", 1, TrunkState.REGISTERED)])
        view.publish([observation("t2", 1, TrunkState.REGISTERED)])
        assert [_take(r, 2) for r in readers] == [[1, 2], [1, 2]]
        assert _take(only_t2, 1) == [2]
        assert built == [1, 2]  # once per change, whatever the number of watchers

        slow = feed.subscribe("default", 2, frozenset())
        for sequence in range(2, 7):
            view.publish([observation("t1", sequence, TrunkState.REGISTERED)])
        deadline = time.monotonic() + 30
        while not slow.dropped and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.dropped  # it reads the log itself from where it is, not the feed's memory
        assert _take(slow, 3) == [3, 4, 5]

        alive[0] = False
        while not leaving.closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leaving.closed  # its client left: the feed let it go without waking it
    finally:
        feed.stop()
    assert only_t2.closed  # the feed stopping ends its watchers


def test_a_watcher_leaving_during_a_delivery_does_not_wait_for_it(tmp_path: Path) -> None:
    """The asyncio server lets a watcher go on its event loop: it must not wait for the
    feed's lock, held across a whole delivery (and its reads), or every call stalls."""
    view = StatusView(SqliteDatabase(tmp_path / "views.sqlite"))
    feed: StatusFeed[int] = StatusFeed(view, lambda tenant, position, observed: position)
    try:
        leaving = feed.subscribe("default", 0, frozenset())
        staying = feed.subscribe("default", 0, frozenset())
        left = threading.Event()

        def leave() -> None:
            feed.leave(leaving)
            left.set()

        with feed._lock:  # a delivery in progress
            threading.Thread(target=leave, daemon=True).start()
            assert left.wait(10), "leave waited for the delivery"
        view.publish([observation("t1", 1, TrunkState.REGISTERED)])
        assert _take(staying, 1) == [1]
        assert leaving.take(0.1) == []  # marked: it receives nothing more
        deadline = time.monotonic() + 30
        while feed.watchers() > 1 and time.monotonic() < deadline:
            feed._sweep()
            time.sleep(0.05)
        assert feed.watchers() == 1  # and the sweep forgets it
    finally:
        feed.stop()


def _take(subscription: Subscription[int], count: int) -> list[int]:
    taken: list[int] = []
    deadline = time.monotonic() + 30
    while len(taken) < count and time.monotonic() < deadline:
        taken.extend(position for position, _ in subscription.take(1.0))
    return taken


def test_a_report_that_cannot_be_shown_is_skipped_not_retried_for_ever(tmp_path: Path) -> None:
    """One bad row once stalled every watcher of every tenant (retried every 0.5 s)."""
    view = StatusView(SqliteDatabase(tmp_path / "views.sqlite"))

    def prepare(tenant: str, position: int, observed: dict[str, Any]) -> int:
        if observed["trunk_id"] == "bad":
            raise ValueError("cannot be shown")
        return position

    feed: StatusFeed[int] = StatusFeed(view, prepare)
    try:
        reader = feed.subscribe("default", 0, frozenset())
        view.publish([observation("bad", 1, TrunkState.REGISTERED)])
        view.publish([observation("t1", 1, TrunkState.REGISTERED)])
        assert _take(reader, 1) == [2]
    finally:
        feed.stop()


def test_watchers_on_an_event_loop_each_get_each_change_and_the_slow_one_is_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The asyncio server's watchers: more than one chunk of them woken per change, all
    receive it; one too far behind is dropped; the feed stopping wakes and ends them."""
    view = StatusView(SqliteDatabase(tmp_path / "views.sqlite"))
    feed: StatusFeed[int] = StatusFeed(view, lambda tenant, position, observed: position)
    monkeypatch.setattr(status_feed, "MAX_BACKLOG", 3)
    count = 3 * status_feed.WAKE_CHUNK + 1

    async def scenario() -> tuple[list[list[int]], bool, list[int], bool]:
        loop = asyncio.get_running_loop()
        readers = [feed.subscribe("default", 0, frozenset(), loop=loop) for _ in range(count)]
        slow = feed.subscribe("default", 0, frozenset(), loop=loop)
        assert isinstance(slow, AsyncSubscription)

        async def take(subscription: Subscription[int], wanted: int) -> list[int]:
            assert isinstance(subscription, AsyncSubscription)
            taken: list[int] = []
            while len(taken) < wanted:
                taken.extend(p for p, _ in await subscription.take_async())
            return taken

        for sequence in range(1, 3):
            view.publish([observation("t1", sequence, TrunkState.REGISTERED)])
        got = await asyncio.wait_for(asyncio.gather(*(take(r, 2) for r in readers)), 30)
        for sequence in range(3, 7):
            view.publish([observation("t1", sequence, TrunkState.REGISTERED)])
        while not slow.dropped:
            await asyncio.sleep(0.05)
        kept = [p for p, _ in await slow.take_async()]
        idle = feed.subscribe("default", 6, frozenset(), loop=loop)
        assert isinstance(idle, AsyncSubscription)
        waiting = asyncio.ensure_future(idle.take_async())
        await asyncio.sleep(0.1)
        await loop.run_in_executor(None, feed.stop)
        woken = await asyncio.wait_for(waiting, 10)
        return got, slow.dropped, kept, idle.closed and woken == []

    try:
        got, dropped, kept, ended = asyncio.run(scenario())
    finally:
        feed.stop()
    assert got == [[1, 2]] * count
    assert dropped and kept == [1, 2, 3]  # what it had; it reads the rest from the log
    assert ended
