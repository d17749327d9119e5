"""scan_topic says when its deadline, not the topic's end, stopped it (a take-over's seed of
the calls in progress then knows it may have missed some)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from infra.messaging.topics import scan_topic, seek_since


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


class Dated:
    """A consumer of three partitions asked for offsets by time: one answers with an
    offset (Kafka and tansu), one with nothing that recent (Kafka: None; tansu 0.6: offset
    0 without a timestamp), or the broker cannot answer at all."""

    def __init__(self, answers: dict[int, Any] | Exception) -> None:
        self.answers = answers
        self.at: dict[int, int | str] = {}
        self.asked: dict[Any, int] = {}

    def end_offsets(self, parts: list[Any]) -> dict[Any, int]:
        return {part: 90 + part.partition for part in parts}

    def offsets_for_times(self, timestamps: dict[Any, int]) -> dict[Any, Any]:
        self.asked = timestamps
        if isinstance(self.answers, Exception):
            raise self.answers
        return {part: self.answers[part.partition] for part in timestamps}

    def seek(self, part: Any, offset: int) -> None:
        self.at[part.partition] = offset

    def seek_to_beginning(self, *parts: Any) -> None:
        self.at.update({part.partition: "start" for part in parts})


def test_a_scan_since_a_time_starts_where_the_broker_says(
        caplog: pytest.LogCaptureFixture) -> None:
    from kafka import TopicPartition
    from kafka.structs import OffsetAndTimestamp

    parts = [TopicPartition("status", p) for p in range(3)]
    consumer = Dated({0: OffsetAndTimestamp(42, 1_700_000_000_000, -1),
                      1: None, 2: OffsetAndTimestamp(0, -1, -1)})
    seek_since(consumer, parts, 1_700_000_000_000)
    assert set(consumer.asked.values()) == {1_700_000_000_000}
    # nothing that recent: from the end as it was before the question, never the start
    assert consumer.at == {0: 42, 1: 91, 2: 92}
    assert not caplog.records


def test_a_broker_that_cannot_date_its_offsets_is_read_from_the_start(
        caplog: pytest.LogCaptureFixture) -> None:
    from kafka import TopicPartition
    from kafka.errors import UnsupportedVersionError

    parts = [TopicPartition("status", p) for p in range(3)]
    consumer = Dated(UnsupportedVersionError("ListOffsets v1"))
    seek_since(consumer, parts, 1_700_000_000_000)
    assert consumer.at == {0: "start", 1: "start", 2: "start"}
    assert any("reading from the start" in r.message for r in caplog.records)
