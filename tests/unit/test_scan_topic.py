"""scan_topic says when its deadline, not the topic's end, stopped it (a take-over's seed of
the calls in progress then knows it may have missed some)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from infra.messaging.topics import scan_topic


class Endless:
    """A consumer whose every poll brings one more record (a topic being written)."""

    def __init__(self, records: bool) -> None:
        self.records = records
        self.offset = 0

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, parts: Any) -> None:
        self.parts = parts

    def seek_to_beginning(self, *parts: Any) -> None:
        self.offset = 0

    def poll(self, timeout_ms: int) -> dict[Any, list[Any]]:
        if not self.records:
            return {}
        self.offset += 1
        return {self.parts[0]: [SimpleNamespace(partition=0, offset=self.offset)]}


def test_a_scan_cut_by_its_deadline_says_so(caplog: pytest.LogCaptureFixture) -> None:
    read = scan_topic(Endless(records=True), "status", timeout=0.2, poll_ms=1)
    assert read and [r.offset for r in read] == sorted(r.offset for r in read)
    assert any("stopped at its 0.2 s limit" in r.message for r in caplog.records)


def test_a_scan_that_reached_the_end_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    assert scan_topic(Endless(records=False), "status", timeout=5, poll_ms=1) == []
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
