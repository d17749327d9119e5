"""The gRPC guards of issue 20 on their own: stream counts, buckets per address, and a
context that goes inactive when the caller's token does."""

from __future__ import annotations

from typing import Any

from infra.grpc_api.guards import MAX_BUCKETS, Buckets, RevocableContext, StreamGate, peer_address


def test_streams_are_counted_per_caller_and_in_total() -> None:
    gate = StreamGate(per_caller=2, total=3)
    assert gate.enter("alice") == "" and gate.enter("alice") == ""
    assert "limit per caller" in gate.enter("alice")
    assert gate.enter("bob") == ""
    assert "its limit" in gate.enter("carol")  # three open in total
    gate.leave("alice")
    assert gate.enter("carol") == ""
    for caller in ("alice", "bob", "carol"):
        gate.leave(caller)
    assert gate.enter("dave") == ""


def test_buckets_refuse_beyond_the_burst_and_forget_idle_addresses() -> None:
    buckets = Buckets(rate=0.001, burst=3)
    assert [buckets.take("10.0.0.1") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("10.0.0.1") > 0 and buckets.empty("10.0.0.1") > 0
    assert buckets.take("10.0.0.2") == 0.0  # another address has its own
    refilled = Buckets(rate=1e9, burst=3)  # every bucket is full again at once
    for i in range(MAX_BUCKETS + 10):
        refilled.take(f"addr-{i}")
    assert len(refilled._buckets) <= MAX_BUCKETS + 1
    assert Buckets(rate=0, burst=0).take("x") == 0.0  # 0 = no limit


class _Context:
    def __init__(self, peer: str = "ipv4:127.0.0.1:5555") -> None:
        self._peer = peer

    def is_active(self) -> bool:
        return True

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float:
        return 9.0


def test_a_revoked_token_makes_the_context_inactive() -> None:
    valid = [True]
    context: Any = _Context()
    wrapped = RevocableContext(context, lambda: valid[0], every=0)
    assert wrapped.is_active() and wrapped.time_remaining() == 9.0
    valid[0] = False
    assert not wrapped.is_active() and wrapped.revoked
    valid[0] = True
    assert not wrapped.is_active()  # once revoked, stays so


def test_the_token_is_asked_at_most_every_so_often() -> None:
    asked: list[bool] = []

    def still_valid() -> bool:
        asked.append(True)
        return True

    context: Any = _Context()
    wrapped = RevocableContext(context, still_valid, every=3600)
    assert all(wrapped.is_active() for _ in range(1000))
    assert asked == []  # it was checked when the stream opened; next in an hour


def test_the_peer_address_drops_the_port() -> None:
    context: Any = _Context()
    assert peer_address(context) == "127.0.0.1"
    assert peer_address(_Context("ipv6:[::1]:4444")) == "::1"  # type: ignore[arg-type]
    assert peer_address(_Context("unix:/tmp/s")) == "unix:/tmp/s"  # type: ignore[arg-type]
