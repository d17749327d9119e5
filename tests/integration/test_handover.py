"""A trunk moving between agents, against a real Kamailio registrar: the new owner's
REGISTER replaces the old owner's binding (RFC 5626 +sip.instance and reg-id derived from
the trunk), so the registrar never holds two bindings for one registration, and an old
owner's late unREGISTER removes only its own Contact."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipagent.engine import SipAgent
from tests.integration.test_sip_agent import PASSWORD, fast, registered, trunk
from tests.kamailio import Kamailio
from tests.status_recorder import Recorder

TRUNK = "7f0c1c1e-1111-4a4a-9b9b-000000000001"


@pytest.fixture
def registrar(tmp_path: Path) -> Iterator[Kamailio]:
    with Kamailio(tmp_path / "kamailio", {"1001": PASSWORD, "2002": PASSWORD},
                  max_expires=3600) as running:
        yield running


def engine(name: str, registrar: Kamailio) -> tuple[SipAgent, Recorder]:
    recorder = Recorder()
    agent = SipAgent(fast(agent_id=name, register_expires=3600), recorder)
    agent.start()
    return agent, recorder


def port_of(contact: str) -> int:
    return int(contact.split("@", 1)[1].split(";")[0].split(":")[1])


def wait_for(registrar: Kamailio, user: str, test: object, timeout: float = 10.0
             ) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        contacts = registrar.contacts(user)
        if test(contacts):  # type: ignore[operator]
            return contacts
        assert time.monotonic() < deadline, contacts
        time.sleep(0.05)


def test_a_new_owner_replaces_the_binding_and_the_old_unregister_spares_it(
        registrar: Kamailio) -> None:
    old, old_seen = engine("agent-a", registrar)
    new, new_seen = engine("agent-b", registrar)
    try:
        settings = trunk(registrar.udp)
        old.update("acme", TRUNK, settings)
        old_seen.wait(TRUNK, registered)
        first = wait_for(registrar, "1001", lambda c: len(c) == 1)
        assert new.transport is not None and old.transport is not None
        assert port_of(first[0]) == old.transport.listen_port

        old.park()  # the old owner stops refreshing, keeps its binding
        new.update("acme", TRUNK, settings)  # the new owner registers the same instance
        new_seen.wait(TRUNK, registered)
        after = wait_for(registrar, "1001", lambda c: len(c) == 1)
        assert port_of(after[0]) == new.transport.listen_port  # replaced, not added

        assert old.unregister_parked(keep=()) == 1  # a late unREGISTER of the old Contact
        time.sleep(0.3)
        assert [port_of(c) for c in registrar.contacts("1001")] == [
            new.transport.listen_port]
    finally:
        old.stop()
        new.stop()
    assert registrar.contacts("1001") == []  # the owner's clean stop unregisters


def test_account_trunk_lines_move_one_binding_each(registrar: Kamailio) -> None:
    old, old_seen = engine("agent-a", registrar)
    new, new_seen = engine("agent-b", registrar)
    try:
        settings = trunk(registrar.udp, type="account", max_registrations=3,
                         username="2002")
        old.update("acme", TRUNK, settings)
        old_seen.wait(TRUNK, registered)
        wait_for(registrar, "2002", lambda c: len(c) == 3)
        old.release("acme", TRUNK)
        new.update("acme", TRUNK, settings)
        new_seen.wait(TRUNK, registered)
        assert new.transport is not None
        moved = wait_for(registrar, "2002", lambda c: len(c) == 3 and all(
            port_of(x) == new.transport.listen_port for x in c))
        assert len(moved) == 3
    finally:
        old.stop()
        new.stop()


def test_a_stop_unregisters_only_what_nobody_took_over(registrar: Kamailio) -> None:
    from sipagent.handover import hand_over

    leaving, seen = engine("agent-a", registrar)
    other = "7f0c1c1e-1111-4a4a-9b9b-000000000002"
    try:
        leaving.update("acme", TRUNK, trunk(registrar.udp))
        leaving.update("acme", other, trunk(registrar.udp, username="2002"))
        seen.wait(TRUNK, registered)
        seen.wait(other, registered)
        asked: list[tuple[set[str], float]] = []

        def taken_over(trunks: set[str], wait: float) -> set[str]:
            asked.append((trunks, wait))
            return {TRUNK}  # another agent reported this one

        assert hand_over(leaving, taken_over, 3.0) == (1, 1)
        assert asked == [({TRUNK, other}, 3.0)]
        assert len(registrar.contacts("1001")) == 1  # left for its new owner
        assert registrar.contacts("2002") == []
        last = seen.wait(other, lambda o: o.state.value == "unregistered", timeout=5)
        assert "no other agent took the trunk over" in last.reason
    finally:
        leaving.stop()
    assert len(registrar.contacts("1001")) == 1  # the stop after a hand-over leaves it
