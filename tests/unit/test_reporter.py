"""The agent's status reporter: what it could not publish, it publishes next time."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from domain.status import StatusObservation, TrunkState
from sipagent.engine import Reporter


def test_status_that_could_not_be_published_is_kept_for_the_next_flush() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.down = True
            self.got: list[str] = []

        def publish(self, observations: Sequence[StatusObservation]) -> None:
            if self.down:
                raise OSError("broker away")
            self.got += [f"{o.trunk_id}:{o.state}" for o in observations]

    sink = Flaky()
    reporter = Reporter(sink, "agent-1")
    reporter.observe("acme", "t1", TrunkState.REGISTERING)
    reporter.observe("acme", "t2", TrunkState.REGISTERING)
    with pytest.raises(OSError, match="broker away"):
        reporter.flush()
    reporter.observe("acme", "t2", TrunkState.REGISTERED)  # newer than the one kept
    sink.down = False
    assert reporter.flush() == 2
    assert sorted(sink.got) == ["t1:registering", "t2:registered"]
