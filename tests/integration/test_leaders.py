"""Control planes sharing PostgreSQL elect one projection runner (and one relay): the other
serves reads and takes over when the leader goes."""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from domain import commands
from domain.model import CommandMeta
from infra.app.control import start
from tests.conftest import settings_for

META = CommandMeta(actor="test", reason="", request_id="")


def test_one_runner_leads_and_the_other_takes_over(request: pytest.FixtureRequest,
                                                   tmp_path: Path) -> None:
    settings = settings_for("postgres", tmp_path, request)
    first = start(settings)
    second = start(replace(settings, data_dir=tmp_path / "second"))
    running = [first, second]
    try:
        deadline = time.monotonic() + 10
        while not (first.runner.leader and first.runner.leader()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert second.runner.leader is not None and not second.runner.leader()

        def create(name: str) -> int:
            done = second.bus.run(partial(
                commands.create_trunk, tenant="default", template="", meta=META,
                raw={"name": name, "type": "peer", "peer_addresses": ["192.0.2.1"],
                     "codecs": ["PCMU"]}), None)
            assert done.error is None
            return second.app.head()

        position = create("one")  # written by the follower, applied by the leader
        assert second.runner.wait_for(position, 10)
        first.stop()
        running.remove(first)
        position = create("two")
        assert second.runner.wait_for(position, 15)  # the follower took over
        assert second.runner.leader()
    finally:
        for plane in running:
            plane.stop()
