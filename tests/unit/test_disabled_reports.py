"""A trunk held disabled is reported once, not again at each change that leaves it
disabled: a report per change grew the status topic with the trunk's history, and the
take-over's scan of that topic with it. Released (its tenant moved) or deleted, it is
reported again when it comes back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from domain.status import TrunkState
from sipagent.engine import SipAgent
from sipagent.settings import SipSettings
from tests.status_recorder import Recorder


@pytest.fixture
def agent() -> Iterator[tuple[SipAgent, Recorder]]:
    recorder = Recorder()
    engine = SipAgent(SipSettings(agent_id="test-agent", listen_host="127.0.0.1",
                                  listen_port=0, destinations=("127.0.0.0/8",)), recorder)
    engine.start()
    yield engine, recorder
    engine.stop()


def trunk(description: str) -> dict[str, object]:
    return {"type": "register", "host": "127.0.0.1:5", "username": "1001",
            "password": "Long-Enough-Password-123", "enabled": False,
            "description": description}


def test_a_disabled_trunk_is_reported_once_whatever_else_changes(
        agent: tuple[SipAgent, Recorder]) -> None:
    engine, recorder = agent
    for n in range(5):
        engine.update("acme", "t1", trunk(f"change {n}"))
    engine.update("acme", "marker", trunk(""))  # applied after them, in order
    recorder.wait_count("marker", 1)
    assert recorder.reports("t1") == [TrunkState.DISABLED]
    engine.release("acme", "t1")  # its tenant moved to another agent, and came back
    engine.update("acme", "t1", trunk("back"))
    recorder.wait_count("t1", 2)
    engine.update("acme", "t1", None)  # deleted, then made again
    recorder.wait_count("t1", 3)
    engine.update("acme", "t1", trunk("again"))
    recorder.wait_count("t1", 4)
    engine.update("acme", "t1", trunk("once more"))
    engine.update("acme", "marker", None)
    recorder.wait_count("marker", 2)
    assert recorder.reports("t1") == [TrunkState.DISABLED, TrunkState.DISABLED,
                                      TrunkState.UNREGISTERED, TrunkState.DISABLED]
