"""Call admission scenarios: each strategy with two and three trunks (the seed's primary and
backup, two 10-channel trunks sharing 20 calls, US and European numbers on different
trunks), limits, leases, failover on call failure and the circuit breaker."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest

from domain import commands
from domain.application import TrunkplaneApp
from domain.errors import NotFoundError, ValidationError
from domain.feeds import MemoryPositions, StoreEventFeed
from domain.model import CommandMeta
from domain.status import TrunkState
from sipagent import admission as admission_module
from sipagent.admission import INBOUND, OUTBOUND, Admission, RefusedError
from sipagent.state import AgentState

META = CommandMeta(actor="test", reason="", request_id="")


class Tenant:
    """A store with trunks and routes, folded into an agent's state as the feed would."""

    def __init__(self) -> None:
        self.app = TrunkplaneApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        self.state = AgentState()
        self.feed = StoreEventFeed(self.app, "agent", MemoryPositions())
        self.live: dict[str, TrunkState] = {}

    def trunk(self, name: str, **fields: Any) -> str:
        raw = {"name": name, "type": "peer", "peer_addresses": ["192.0.2.1"],
               "codecs": ["PCMU"], **fields}
        done = self.app.execute(partial(commands.create_trunk, tenant="acme", raw=raw,
                                        template="", meta=META)).unwrap()
        self.sync()
        trunk_id = str(done.aggregate.id)
        self.live[trunk_id] = TrunkState.OK
        return trunk_id

    def limit(self, name: str, **limits: int | None) -> None:
        self.app.execute(partial(commands.update_trunk, tenant="acme", ref=name, etag="",
                                 meta=META, patch={"call_limits": limits})).unwrap()
        self.sync()

    def route(self, name: str, patterns: list[dict[str, str]], trunks: list[str],
              strategy: str = "failover", weights: list[int] | None = None,
              extensions: list[str] | None = None) -> str:
        items = [{"trunk_id": t, **({"weight": weights[i]} if weights else {})}
                 for i, t in enumerate(trunks)]
        done = self.app.execute(partial(commands.create_outbound_route, tenant="acme",
                                        position=None, meta=META, raw={
                                            "name": name, "dial_patterns": patterns,
                                            "trunks": items, "strategy": strategy,
                                            "allowed_extensions": extensions or []})).unwrap()
        self.sync()
        return str(done.aggregate.id)

    def inbound(self, did: str, destination: str, trunk: str = "") -> None:
        self.app.execute(partial(commands.create_inbound_route, tenant="acme", meta=META,
                                 raw={"did_pattern": did, "destination": destination,
                                      "trunk_id": trunk})).unwrap()
        self.sync()

    def sync(self) -> None:
        self.state.apply(self.feed.read(timeout=0))

    def admission(self, **options: Any) -> Admission:
        return Admission(self.state, lambda trunk_id: self.live.get(trunk_id), **options)


US = [{"match": "NXXNXXXXXX", "prefix": "", "prepend": "1"}]


@pytest.fixture
def tenant() -> Tenant:
    return Tenant()


def out(admission: Admission, number: str = "2125551234", extension: str = "100") -> Any:
    return admission.acquire("acme", OUTBOUND, number, extension=extension, call_id="c")


def test_failover_takes_the_backup_only_when_the_primary_is_down_or_full(
        tenant: Tenant) -> None:
    primary = tenant.trunk("primary", call_limits={"max_concurrent_calls": 1})
    backup = tenant.trunk("backup")
    tenant.route("us", US, ["primary", "backup"])
    admission = tenant.admission()
    first = out(admission)
    assert first.lease.trunk_id == primary and first.lease.dial_number == "12125551234"
    assert out(admission).lease.trunk_id == backup  # primary full
    admission.release(first.lease.lease_id)
    tenant.live[primary] = TrunkState.UNREACHABLE
    taken = out(admission)
    assert taken.lease.trunk_id == backup
    assert [(c.trunk_name, c.outcome) for c in taken.considered] == [
        ("primary", "down"), ("backup", "taken")]


def test_spread_shares_twenty_calls_over_two_ten_channel_trunks(tenant: Tenant) -> None:
    for name in ("a", "b"):
        tenant.trunk(name, call_limits={"max_concurrent_calls": 10})
    tenant.route("us", US, ["a", "b"], strategy="spread")
    admission = tenant.admission()
    names = Counter(out(admission).lease.trunk_name for _ in range(20))
    assert names == {"a": 10, "b": 10}
    with pytest.raises(RefusedError) as refused:
        out(admission)
    assert refused.value.code == "RESOURCE_EXHAUSTED"
    assert [c.outcome for c in refused.value.considered] == ["full", "full"]
    assert "10 of 10 total channels in use" in str(refused.value)


def test_spread_prefers_the_most_free_channels_ties_in_order(tenant: Tenant) -> None:
    tenant.trunk("small", call_limits={"max_concurrent_calls": 2})
    tenant.trunk("big", call_limits={"max_concurrent_calls": 5})
    tenant.trunk("same", call_limits={"max_concurrent_calls": 5})
    tenant.route("us", US, ["small", "big", "same"], strategy="spread")
    admission = tenant.admission()
    assert [out(admission).lease.trunk_name for _ in range(4)] == [
        "big", "same", "big", "same"]


def test_weighted_spreads_by_weight(tenant: Tenant) -> None:
    for name in ("heavy", "light", "none"):
        tenant.trunk(name)
    tenant.route("us", US, ["heavy", "light", "none"], strategy="weighted", weights=[8, 2, 1])
    admission = tenant.admission()
    names: Counter[str] = Counter()
    for _ in range(1100):
        grant = out(admission)
        names[grant.lease.trunk_name] += 1
        admission.release(grant.lease.lease_id)
    assert 700 <= names["heavy"] <= 900 and 120 <= names["light"] <= 280
    assert 40 <= names["none"] <= 170


def test_destination_routing_us_and_european_numbers(tenant: Tenant) -> None:
    tenant.trunk("us-carrier")
    tenant.trunk("eu-carrier")
    tenant.route("us", US, ["us-carrier"])
    tenant.route("europe", [{"match": "00[3-4]X.", "prefix": "", "prepend": ""}],
                 ["eu-carrier"])
    admission = tenant.admission()
    assert out(admission, "2125551234").lease.trunk_name == "us-carrier"
    assert out(admission, "0033142685300").lease.trunk_name == "eu-carrier"
    with pytest.raises(RefusedError) as refused:
        out(admission, "0061299999999")
    assert refused.value.code == "NOT_FOUND"


def test_refusals_name_the_reason(tenant: Tenant) -> None:
    down = tenant.trunk("down")
    tenant.route("us", US, ["down"], extensions=["1XX"])
    tenant.live[down] = TrunkState.AUTH_FAILED
    admission = tenant.admission()
    with pytest.raises(RefusedError) as refused:
        out(admission, extension="200")
    assert refused.value.code == "PERMISSION_DENIED" and "'200'" in str(refused.value)
    with pytest.raises(RefusedError) as refused:
        out(admission)
    assert refused.value.code == "FAILED_PRECONDITION"
    assert "down: down (auth_failed on the wire)" in str(refused.value)
    with pytest.raises(RefusedError) as refused:
        admission.acquire("nobody", OUTBOUND, "2125551234")
    assert refused.value.code == "FAILED_PRECONDITION" and "not held" in str(refused.value)
    assert admission.decisions == {"PERMISSION_DENIED": 1, "FAILED_PRECONDITION": 2}


def test_hundreds_of_concurrent_acquires_get_exactly_the_limit(tenant: Tenant) -> None:
    ten = tenant.trunk("ten", call_limits={"max_concurrent_calls": 20,
                                           "max_outbound_calls": 10})
    tenant.route("us", US, ["ten"])
    admission = tenant.admission()
    granted: list[str] = []
    refused: list[str] = []
    start = threading.Barrier(300)

    def call() -> None:
        start.wait()
        try:
            granted.append(out(admission).lease.lease_id)
        except RefusedError as error:
            refused.append(error.code)

    threads = [threading.Thread(target=call) for _ in range(300)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 10 and len(set(granted)) == 10
    assert refused == ["RESOURCE_EXHAUSTED"] * 290
    assert admission.active(ten) == (0, 10)


def test_leases_renew_expire_and_release_twice_harmlessly(
        tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]  # the admission's clock, moved by hand: no sleep races a loaded machine
    monkeypatch.setattr(admission_module, "time",
                        SimpleNamespace(monotonic=lambda: now[0], time=time.time))
    trunk = tenant.trunk("one", call_limits={"max_concurrent_calls": 1})
    tenant.route("us", US, ["one"])
    admission = tenant.admission(ttl=0.3)
    lease = out(admission).lease
    now[0] += 0.2
    assert admission.renew(lease.lease_id).lease_id == lease.lease_id
    now[0] += 0.2  # 0.4 s after acquiring, 0.2 s after renewing: still held
    with pytest.raises(RefusedError):
        out(admission)
    now[0] += 0.35  # not renewed: a crashed PBX leaks nothing
    assert admission.active(trunk) == (0, 0)
    assert admission.release(lease.lease_id) is False
    again = out(admission).lease
    assert admission.release(again.lease_id) is True
    assert admission.release(again.lease_id) is False


def test_a_lower_limit_applies_to_new_calls_and_keeps_existing_leases(tenant: Tenant) -> None:
    trunk = tenant.trunk("one", call_limits={"max_concurrent_calls": 3})
    tenant.route("us", US, ["one"])
    admission = tenant.admission()
    leases = [out(admission).lease for _ in range(3)]
    tenant.limit("one", max_concurrent_calls=1)
    assert admission.active(trunk) == (0, 3)
    with pytest.raises(RefusedError):
        out(admission)
    for lease in leases:
        assert admission.renew(lease.lease_id)
        admission.release(lease.lease_id)
    assert out(admission).lease.trunk_id == trunk


def test_inbound_matches_the_did_and_enforces_inbound_limits(tenant: Tenant) -> None:
    tenant.trunk("carrier", call_limits={"max_concurrent_calls": 5, "max_inbound_calls": 1})
    tenant.inbound("", "ext:operator")
    tenant.inbound("_1555XXXXXXX", "ivr:main")
    tenant.inbound("15551234567", "ext:1001", trunk="carrier")
    admission = tenant.admission()
    exact = admission.acquire("acme", INBOUND, "", did="15551234567", trunk="carrier")
    assert exact.lease.destination == "ext:1001" and exact.lease.dial_number == "15551234567"
    with pytest.raises(RefusedError) as refused:
        admission.acquire("acme", INBOUND, "", did="15559999999", trunk="carrier")
    assert refused.value.code == "RESOURCE_EXHAUSTED"
    admission.release(exact.lease.lease_id)
    assert admission.acquire("acme", INBOUND, "", did="15559999999",
                             trunk="carrier").lease.destination == "ivr:main"
    with pytest.raises(RefusedError) as refused:
        admission.acquire("acme", INBOUND, "", did="1", trunk="nope")
    assert refused.value.code == "NOT_FOUND"


def test_a_5xx_fails_over_to_the_next_trunk_a_404_does_not(tenant: Tenant) -> None:
    first = tenant.trunk("first")
    second = tenant.trunk("second")
    tenant.trunk("third")
    tenant.route("us", US, ["first", "second", "third"])
    admission = tenant.admission()
    lease = out(admission).lease
    grant, failed_over = admission.report_failure(lease.lease_id, 503)
    assert failed_over and grant is not None and grant.lease.trunk_id == second
    assert grant.lease.dial_number == "12125551234" and admission.active(first) == (0, 0)
    grant, failed_over = admission.report_failure(grant.lease.lease_id, 408)
    assert grant is not None and grant.lease.trunk_name == "third"
    with pytest.raises(RefusedError) as refused:
        admission.report_failure(grant.lease.lease_id, 500)  # every trunk tried
    assert refused.value.code == "FAILED_PRECONDITION"
    lease = out(admission).lease
    assert admission.report_failure(lease.lease_id, 404) == (None, False)
    assert admission.active(lease.trunk_id) == (0, 0)


def test_repeated_failures_open_the_breaker_until_the_next_success(tenant: Tenant) -> None:
    flaky = tenant.trunk("flaky")
    tenant.trunk("steady")
    tenant.route("us", US, ["flaky", "steady"])
    success = {"at": 0.0}
    admission = tenant.admission(last_success=lambda trunk_id: success["at"])
    for _ in range(3):
        lease = out(admission).lease
        assert lease.trunk_id == flaky
        admission.report_failure(lease.lease_id, 503)
    assert admission.degraded(flaky)
    grant = out(admission)
    assert grant.lease.trunk_name == "steady"
    assert grant.considered[0].outcome == "degraded"
    success["at"] = time.monotonic()  # the engine saw a 200 to REGISTER or OPTIONS
    assert out(admission).lease.trunk_id == flaky
    assert not admission.degraded(flaky)


def test_active_calls_are_published_per_trunk(tenant: Tenant) -> None:
    trunk = tenant.trunk("one")
    tenant.route("us", US, ["one"])
    seen: list[tuple[str, int, int]] = []
    admission = tenant.admission(on_calls=lambda t, trunk_id, i, o: seen.append((trunk_id, i, o)))
    lease = out(admission).lease
    admission.release(lease.lease_id)
    assert seen == [(trunk, 0, 1), (trunk, 0, 0)]


def test_route_and_tenant_guards(tenant: Tenant) -> None:
    tenant.trunk("carrier")
    route = tenant.route("world", [{"match": "X.", "prefix": "", "prepend": ""}], ["carrier"])
    tenant.app.execute(partial(commands.update_outbound_route, tenant="acme", ref="world",
                               patch={"guard": {"block_prefixes": ["1900", "+882"],
                                                "max_calls_per_minute": 3}},
                               position=None, etag="", meta=META)).unwrap()
    tenant.app.execute(partial(commands.update_tenant_policy, tenant="acme", meta=META,
                               patch={"guard": {"allow_prefixes": ["1", "0044"],
                                                "daily_cap": 4}})).unwrap()
    tenant.sync()
    held = tenant.state.tenant("acme")
    assert held is not None and held.outbound[route]["guard"]["max_calls_per_minute"] == 3
    admission = tenant.admission()

    with pytest.raises(RefusedError) as blocked:
        out(admission, "19005551234")
    assert blocked.value.code == "PERMISSION_DENIED"
    assert "route world: guard block_prefixes: 19005551234 starts with the blocked prefix " \
           "1900" in str(blocked.value)
    with pytest.raises(RefusedError) as blocked:
        out(admission, "008825551234")  # +882 in its 00 form
    assert "blocked prefix +882" in str(blocked.value)
    with pytest.raises(RefusedError) as elsewhere:
        out(admission, "0033142685300")
    assert "tenant acme: guard allow_prefixes" in str(elsewhere.value)

    for _ in range(3):
        admission.release(out(admission, "12125551234").lease.lease_id)
    with pytest.raises(RefusedError) as rate:
        out(admission, "12125551234")
    assert rate.value.code == "RESOURCE_EXHAUSTED"
    assert "route world: guard max_calls_per_minute (3) reached" in str(rate.value)
    # the minute passes (the clock is moved, not waited for)
    admission._recent = {k: deque(t - 61 for t in v) for k, v in admission._recent.items()}
    admission.release(out(admission, "00442079460000").lease.lease_id)
    with pytest.raises(RefusedError) as cap:
        out(admission, "12125551234")
    assert "tenant acme: guard daily_cap (4) reached" in str(cap.value)


def test_guard_settings_are_validated(tenant: Tenant) -> None:
    tenant.trunk("carrier")
    tenant.route("world", [{"match": "X.", "prefix": "", "prepend": ""}], ["carrier"])
    with pytest.raises(ValidationError) as bad:
        tenant.app.execute(partial(
            commands.update_outbound_route, tenant="acme", ref="world", position=None,
            etag="", meta=META, patch={"guard": {"max_calls_per_minute": -1,
                                                 "allow_prefixes": ["1", "abc"],
                                                 "block_prefixes": ["1"]}})).unwrap()
    assert {v.field for v in bad.value.violations} == {
        "guard.max_calls_per_minute", "guard.allow_prefixes[1]", "guard.block_prefixes"}
    with pytest.raises(ValidationError):
        tenant.app.execute(partial(commands.update_tenant_policy, tenant="acme", meta=META,
                                   patch={"guard": {"daily_cap": "many"}})).unwrap()


def test_calls_from_before_a_restart_keep_their_channels(tenant: Tenant) -> None:
    trunk = tenant.trunk("one", call_limits={"max_concurrent_calls": 2})
    tenant.route("us", US, ["one"])
    before = tenant.admission(ttl=0.5)
    old = [out(before).lease.lease_id for _ in range(2)]
    assert old[0].startswith(f"{trunk}.o.")
    after = tenant.admission(ttl=0.5)  # the agent restarted: it knows no lease
    after.seed("acme", trunk, 0, 2)  # what its last status observation counted
    with pytest.raises(RefusedError) as full:
        out(after)
    assert full.value.code == "RESOURCE_EXHAUSTED"
    assert after.renew(old[0]).lease_id == old[0]  # the PBX renews: adopted, still 2
    assert after.active(trunk) == (0, 2)
    assert after.release(old[1]) is True  # ended while the agent was away
    assert after.release(old[1]) is False
    assert after.active(trunk) == (0, 1)
    time.sleep(0.6)  # the adopted lease was not renewed again
    assert after.active(trunk) == (0, 0)
    with pytest.raises(NotFoundError):
        after.renew("not-a-lease")


def test_a_tenant_being_taken_over_admits_nothing_until_its_calls_are_seeded(
        tenant: Tenant) -> None:
    """From before a new partition's state is restored until the calls in progress its
    previous owner reported are seeded, its tenants' calls are refused (UNAVAILABLE: try
    again); then the inherited calls count against the limits."""
    trunk = tenant.trunk("one", call_limits={"max_concurrent_calls": 2})
    tenant.route("us", US, ["one"])
    admission = tenant.admission()
    partition = tenant.state.tenant("acme").partition  # type: ignore[union-attr]
    admission.taking_over([partition, partition + 1])
    with pytest.raises(RefusedError) as early:
        out(admission)
    assert early.value.code == "UNAVAILABLE" and "being taken over" in str(early.value)
    admission.taken_over([partition + 1])  # another partition's seed: still refused
    with pytest.raises(RefusedError):
        out(admission)
    admission.seed("acme", trunk, 0, 1)  # one call up on the old owner
    admission.taken_over([partition])
    out(admission)  # the second channel
    with pytest.raises(RefusedError) as full:
        out(admission)
    assert full.value.code == "RESOURCE_EXHAUSTED"
    assert admission.active(trunk) == (0, 2)


def test_a_call_of_the_previous_owner_renewed_before_the_seed_is_told_to_try_again(
        tenant: Tenant) -> None:
    """Renewed between the restore and the seed, a lease of the previous owner is neither
    unknown (the PBX could end the call) nor granted past the limit: UNAVAILABLE, and once
    the calls in progress are seeded the renewal adopts it."""
    trunk = tenant.trunk("one", call_limits={"max_concurrent_calls": 1})
    tenant.route("us", US, ["one"])
    old = out(tenant.admission()).lease.lease_id  # the previous owner's call
    admission = tenant.admission()
    partition = tenant.state.tenant("acme").partition  # type: ignore[union-attr]
    admission.taking_over([partition])
    with pytest.raises(RefusedError) as early:
        admission.renew(old)
    assert early.value.code == "UNAVAILABLE"
    with pytest.raises(RefusedError):  # a trunk of no tenant held yet (still restoring)
        admission.renew(f"other-trunk.i.{'0' * 32}")
    with pytest.raises(NotFoundError):  # not a lease id at all
        admission.renew("not-a-lease")
    admission.seed("acme", trunk, 0, 1)
    admission.taken_over([partition])
    assert admission.renew(old).lease_id == old
    assert admission.active(trunk) == (0, 1)
    with pytest.raises(NotFoundError):  # unknown, with no take-over under way
        admission.renew(f"{trunk}.o.{'0' * 32}")


def test_a_take_over_that_never_ends_refuses_only_for_a_while(tenant: Tenant) -> None:
    tenant.trunk("one")
    tenant.route("us", US, ["one"])
    admission = tenant.admission()
    admission.taking_over([tenant.state.tenant("acme").partition],  # type: ignore[union-attr]
                          at_most=0.2)
    with pytest.raises(RefusedError):
        out(admission)
    time.sleep(0.25)
    assert out(admission).lease.trunk_id


def test_inherited_calls_that_nobody_renews_free_their_channels(tenant: Tenant) -> None:
    trunk = tenant.trunk("one", call_limits={"max_concurrent_calls": 1})
    tenant.route("us", US, ["one"])
    admission = tenant.admission(ttl=0.3)
    admission.seed("acme", trunk, 1, 0)
    with pytest.raises(RefusedError):
        out(admission)
    time.sleep(0.35)
    assert out(admission).lease.trunk_id == trunk
