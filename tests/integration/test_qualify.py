"""Qualify against a real Kamailio: a registered trunk whose provider goes away shows
`unreachable` within its own OPTIONS interval and thresholds (not `registered` until the
next refresh), admission skips it, and it registers again as soon as the provider answers;
an OPTIONS answer outside the trunk's ok codes (403, 404) is a miss, shown with its code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.status import TrunkState
from sipagent.admission import UP_STATES
from sipagent.engine import SipAgent
from tests.integration.test_sip_agent import PASSWORD, fast, trunk
from tests.kamailio import Kamailio
from tests.status_recorder import Recorder


@pytest.fixture
def engine() -> Iterator[tuple[SipAgent, Recorder]]:
    recorder = Recorder()
    # the agent's own interval is long: every probe in these tests is the trunk's timers
    agent = SipAgent(fast(options_interval=300.0, options_timeout=0.5), recorder)
    agent.start()
    yield agent, recorder
    agent.stop()


def test_a_provider_that_goes_away_is_unreachable_then_registered_again_at_once(
        tmp_path: Path, engine: tuple[SipAgent, Recorder]) -> None:
    agent, recorder = engine
    with Kamailio(tmp_path / "k", {"1001": PASSWORD}) as kamailio:  # grants an hour
        agent.update("acme", "t1", trunk(kamailio.udp, timers={
            "options_interval": 1, "down_after": 2, "up_after": 1,
            "registration_expiry": 600}))
        first = recorder.wait("t1", lambda o: o.state == TrunkState.REGISTERED)
        assert first.contacts[0].expires_at is not None
        granted = (first.contacts[0].expires_at - datetime.now(UTC)).total_seconds()
        assert 500 < granted <= 600  # the trunk's registration_expiry, not the agent's hour
        probed = recorder.wait("t1", lambda o: o.state == TrunkState.REGISTERED and bool(
            o.peers) and o.peers[0].rtt_ms is not None and o.peers[0].up)
        assert probed.peers[0].address == f"udp:127.0.0.1:{kamailio.udp}"

        kamailio.stop()  # the provider goes away; the binding would stay ~55 min
        down = recorder.wait("t1", lambda o: o.state == TrunkState.UNREACHABLE, timeout=30)
        assert down.reason.startswith("no answer to OPTIONS") and not down.peers[0].up
        assert agent.live_state("t1") not in UP_STATES  # admission skips it

        kamailio.start()  # back, with an empty location table (it keeps it in memory)
        assert kamailio.contacts("1001") == []
        started = time.monotonic()
        again = recorder.wait("t1", lambda o: o.state == TrunkState.REGISTERED, timeout=30)
        assert again.peers[0].up
        deadline = time.monotonic() + 20
        while not kamailio.contacts("1001"):
            assert time.monotonic() < deadline, "not registered again"
            time.sleep(0.1)
        # registered again at once, not at the next refresh (minutes away)
        assert time.monotonic() - started < 60


@pytest.mark.parametrize("reply", [(404, "Not Here"), (403, "Go Away")])
def test_an_answer_outside_the_ok_codes_is_a_miss(
        tmp_path: Path, engine: tuple[SipAgent, Recorder], reply: tuple[int, str]) -> None:
    agent, recorder = engine
    with Kamailio(tmp_path / "k", {"1001": PASSWORD}, options_reply=reply) as kamailio:
        peer = {"type": "peer", "host": "", "transport": "udp", "enabled": True,
                "peer_addresses": [f"127.0.0.1:{kamailio.udp}"],
                "timers": {"options_interval": 1, "down_after": 1}}
        agent.update("acme", "p1", peer)
        down = recorder.wait("p1", lambda o: o.state == TrunkState.UNREACHABLE)
        assert (down.sip_code, down.reason) == reply
        # the same answer is fine for a trunk that lists it
        agent.update("acme", "p2", {**peer, "timers": {
            "options_interval": 1, "ok_codes": [str(reply[0])]}})
        recorder.wait("p2", lambda o: o.state == TrunkState.OK)
        # a registered trunk whose registrar answers OPTIONS so: unreachable, with the code
        agent.update("acme", "t1", trunk(kamailio.udp, timers={
            "options_interval": 1, "down_after": 2}))
        recorder.wait("t1", lambda o: o.state == TrunkState.REGISTERED)
        shown = recorder.wait("t1", lambda o: o.state == TrunkState.UNREACHABLE)
        assert (shown.sip_code, shown.reason) == (
            reply[0], f"OPTIONS answered {reply[0]} {reply[1]}")


def test_qualify_off_sends_no_options(tmp_path: Path,
                                      engine: tuple[SipAgent, Recorder]) -> None:
    agent, recorder = engine
    with Kamailio(tmp_path / "k", {"1001": PASSWORD}, options_reply=(404, "No")) as kamailio:
        agent.update("acme", "t1", trunk(kamailio.udp, timers={
            "options_interval": 1, "qualify": False}))
        recorder.wait("t1", lambda o: o.state == TrunkState.REGISTERED)
        time.sleep(2.5)  # what would be two probes: none is sent, nothing changes
        assert agent.counters.options_sent == 0
        latest = recorder.latest("t1")
        assert latest is not None and latest.state == TrunkState.REGISTERED
