"""The state topic: the agents' snapshots of the aggregates of the tenants they own (key:
the aggregate id; value: `AggregateState` in Avro) and each partition's position (key:
`position`), on the same partition number as the events that tenant's events go to. An
agent taking a partition over reads it first, then the events from the position: its
take-over costs what the tenants are, not everything they went through.

Crash safety: the writer sends snapshots, waits for the broker to acknowledge every one,
and only then the position they reflect (never past an event still waiting for its
predecessor). A crash between an event and its snapshot leaves the position before that
event: the next owner reads the event again and the versions recorded skip what the
snapshots already hold. Reading keeps the highest version of each aggregate and the
newest position of each partition, so it is right whether or not the broker compacts.

A deleted trunk, route or PBX is written as a tombstone (no value; its version, kind and
tenant in headers): a compacting broker drops the aggregate's records, and a new owner
reading before that knows it deleted (its version still tells earlier copies of its
events apart), never restores it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from uuid import UUID

from kafka import KafkaConsumer, TopicPartition

from domain.feeds import AggregateState, StatePosition
from infra.config.settings import KafkaSettings
from infra.messaging.codec import AvroCodec
from infra.messaging.topics import LazyProducer, Outgoing, client, producer

log = logging.getLogger(__name__)
POSITION_KEY = b"position"
# a snapshot's version, readable without decoding it: a broker that does not compact (or
# not yet: Kafka leaves the active segment alone) keeps every snapshot written, and only
# the newest of each aggregate is worth decoding
VERSION_HEADER = "version"
# a tombstone's other headers: what a new owner needs to forget the aggregate
KIND_HEADER = "kind"
TENANT_HEADER = "tenant"
# the owner epoch a record was written under (`owner_epoch`), and each owner's marker,
# written once per partition and epoch before its first record there (key: the prefix
# and the epoch, so compaction never drops it; value: the position it starts from): a
# record of a lower epoch after it was written by a deposed owner (paused, say, while
# its partitions moved), and is left out
EPOCH_HEADER = "epoch"
MARKER_PREFIX = b"epoch:"
CATALOG = "catalog"  # sipagent.state.CATALOG: a tenant's route order and policy


class Snapshots(Protocol):
    """sipagent.state.AgentState's side of the state topic."""

    def changes(self) -> tuple[list[tuple[int, AggregateState]], list[StatePosition]]: ...
    def written(self, positions: Sequence[StatePosition]) -> None: ...
    def unwritten(self, states: Sequence[tuple[int, AggregateState]]) -> None: ...
    def position_written(self, partition: int) -> int | None: ...
    def restore(self, partition: int, states: Sequence[AggregateState],
                offset: int | None) -> int: ...


class StateWriter:
    """Writes an agent's changes to the state topic at most every `every` seconds; called
    by its feed loop after each commit. A failed write is retried with the next changes,
    on a back-off.

    Every record carries the owner epoch (`owner_epoch`: above the `fences` its restore
    read, then the group's `generation`), and before its first record of a partition in
    an epoch the writer marks it: an owner deposed while paused, that writes once it
    resumes, writes under a lower epoch after its successor's marker, and readers leave
    those records out."""

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, state: Snapshots,
                 every: float = 1.0, make_producer: Callable[[], Any] | None = None,
                 behind: Callable[[], bool] = lambda: False,
                 catching_up_every: float = 300.0,
                 generation: Callable[[], int] = lambda: 0,
                 fences: dict[int, int] | None = None) -> None:
        self.topic = kafka.state_topic
        self.generation = generation
        self.fences = {} if fences is None else fences  # restore's: partition -> epoch
        self._marked: dict[int, int] = {}  # partition -> the epoch of its last marker
        # while the feed is behind (reading a long history), snapshots go out every
        # `catching_up_every` seconds: written every second, an aggregate changed all
        # along a first read of a long history left a snapshot per second on the topic,
        # all read again by the next owner where the broker does not compact; every
        # 30 s, a 1,000,000-event first read on a loaded machine (21 minutes) still left
        # about 40 per trunk, and the next owner spent 24 s reading them (kafka-python's
        # record parsing, 80% of it) against 4 s for one per trunk. A crash while
        # catching up costs at most 5 minutes of reading again
        self.behind = behind
        self.catching_up_every = catching_up_every
        self.codec = codec
        self.state = state
        self.every = every
        self.producer = LazyProducer(make_producer
                                     or (lambda: producer(kafka, "trunkplane-state")))
        self._due = 0.0  # no write before (a back-off after a failure)
        self._last = -1e9  # time.monotonic() of the last write
        self.failures = 0
        self.written = 0  # snapshots acknowledged
        self.positions = 0  # positions acknowledged

    def __call__(self) -> None:
        now = time.monotonic()
        every = self.catching_up_every if self.behind() else self.every
        if now < self._due or now - self._last < every:
            return
        self._last = now
        self.write()

    def write(self) -> bool:
        """Writes what changed now; False when the broker did not take it."""
        states, positions = self.state.changes()
        if not states and not positions:
            return True
        try:
            generation = self.generation()
            epochs = {p: owner_epoch(self.fences.get(p, -1), generation)
                      for p in {p for p, _ in states} | {p.partition for p in positions}}
            self._mark(epochs)
            self._send([self._record(p, s, epochs[p]) for p, s in states])
            # only after every snapshot is acknowledged: a position never runs ahead
            self._send([(p.partition, POSITION_KEY, self.codec.encode_position(p),
                         [(EPOCH_HEADER, str(epochs[p.partition]).encode())])
                        for p in positions])
        except Exception as error:
            self.state.unwritten(states)  # (a failed delivery dropped the producer)
            self.failures += 1
            self._due = time.monotonic() + min(10.0, self.every * 2 ** min(self.failures, 6))
            log.warning("state topic: %d snapshots not written (%s: %s); trying again",
                        len(states), type(error).__name__, error)
            return False
        self.failures = 0
        self.state.written(positions)
        self.written += len(states)
        self.positions += len(positions)
        return True

    def _mark(self, epochs: dict[int, int]) -> None:
        """Each partition's marker of a new epoch, acknowledged before its records; its
        value is the position written before, which the records before it reflect."""
        new = {p: e for p, e in epochs.items() if self._marked.get(p) != e}
        markers = []
        for partition, epoch in sorted(new.items()):
            offset = self.state.position_written(partition)
            markers.append((partition, MARKER_PREFIX + str(epoch).encode(),
                            self.codec.encode_position(StatePosition(
                                partition, -1 if offset is None else offset)),
                            [(EPOCH_HEADER, str(epoch).encode())]))
        self._send(markers)
        self._marked.update(new)

    def _record(self, partition: int, state: AggregateState, epoch: int
                ) -> tuple[int, bytes, bytes | None, list[tuple[str, bytes]]]:
        headers = [(VERSION_HEADER, str(state.version).encode()),
                   (EPOCH_HEADER, str(epoch).encode())]
        if tombstone(state):
            headers += [(KIND_HEADER, state.kind.encode()),
                        (TENANT_HEADER, state.tenant.encode())]
            return partition, str(state.aggregate_id).encode(), None, headers
        return partition, str(state.aggregate_id).encode(), self.codec.encode_state(state), \
            headers

    def _send(self, records: Sequence[tuple[int, bytes, bytes | None, list[tuple[str, bytes]]]]
              ) -> None:
        if records:
            self.producer.deliver(self.topic, [Outgoing(key, value, partition, headers or None)
                                               for partition, key, value, headers in records],
                                  timeout=10)

    def close(self) -> None:
        self.producer.close()


class Partition:
    """What reading one partition of the state topic keeps, record by record in offset
    order: the owner epochs marked so far, the snapshot of each aggregate that wins, the
    position that wins, and the keys a deposed owner wrote after a newer one's marker."""

    def __init__(self) -> None:
        self.fence = -1  # the highest epoch marked so far (every record before its marker)
        self.snapshots: dict[bytes, tuple[int, int, Any]] = {}  # key: (epoch, version, record)
        self.position: tuple[int, int] | None = None  # (epoch, offset; -1: none recorded)
        self.late: set[bytes] = set()

    def add(self, record: Any, codec: AvroCodec) -> None:
        epoch = _epoch(record)
        if record.key.startswith(MARKER_PREFIX):
            self.fence = max(self.fence, epoch)
            self._position(epoch, codec.decode(record.value).value.offset)
            return
        if epoch < self.fence:
            # written by an owner deposed before that: it may be older than what the
            # newer owner wrote of the same key, which a compacting broker then dropped
            self.late.add(record.key)
            return
        if record.key == POSITION_KEY:
            self._position(epoch, codec.decode(record.value).value.offset)
            return
        version = _version(record, codec)
        had = self.snapshots.get(record.key)
        if had is None or (had[0], had[1]) <= (epoch, version):
            self.snapshots[record.key] = (epoch, version, record)

    def _position(self, epoch: int, offset: int) -> None:
        if self.position is None or self.position[0] <= epoch:
            self.position = (epoch, offset)

    def suspect(self) -> set[bytes]:
        """Aggregates only a deposed owner's late records hold: their newer records may
        have been compacted away, so the partition is read from the start."""
        return self.late - self.snapshots.keys() - {POSITION_KEY}

    def states(self, codec: AvroCodec) -> list[AggregateState]:
        states = []
        for _, _, record in self.snapshots.values():
            if record.value is None:
                states.append(_deleted(record))
                continue
            state = codec.decode(record.value).value
            if isinstance(state, AggregateState):
                states.append(state)
        return states


def read_state(kafka: KafkaSettings, codec: AvroCodec, partitions: Sequence[int],
               timeout: float = 120.0, fences: dict[int, int] | None = None
               ) -> tuple[dict[int, list[AggregateState]], dict[int, int]]:
    """The snapshots of the partitions' aggregates (of the newest owner epoch, the highest
    version) and each partition's newest position, read to the end (tansu's end offsets
    may fall short of it: then until a poll brings nothing); records a deposed owner
    wrote after a newer owner's marker are left out (a partition where nothing else
    holds one of their aggregates gets no position: read from the start). `fences`:
    filled with each partition's highest owner epoch. Raises when the broker does not
    answer in `timeout` seconds, or a record cannot be decoded: the caller reads the
    events from the start instead."""
    consumer = KafkaConsumer(**client(kafka), enable_auto_commit=False,
                             client_id="trunkplane-state", request_timeout_ms=10000)
    read = {p: Partition() for p in partitions}
    try:
        parts = [TopicPartition(kafka.state_topic, p) for p in sorted(partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout
        while True:
            batch = consumer.poll(timeout_ms=200, max_records=10000)
            for part, records in batch.items():
                into = read[part.partition]
                for record in records:
                    into.add(record, codec)
            if not batch and all(consumer.position(p) >= ends[p] for p in parts):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kafka.state_topic}: not read to its end in "
                                   f"{timeout:.0f} s")
    finally:
        consumer.close()
    states: dict[int, list[AggregateState]] = {}
    positions: dict[int, int] = {}
    for partition, part in read.items():
        if fences is not None:
            fences[partition] = part.fence
        states[partition] = part.states(codec)
        suspect = part.suspect()
        if suspect:
            log.warning("%s partition %d: %d aggregates written by a deposed owner after "
                        "its successor began; reading the partition's events from the "
                        "start", kafka.state_topic, partition, len(suspect))
        elif part.position is not None and part.position[1] >= 0:
            positions[partition] = part.position[1]
    return states, positions


def owner_epoch(fence: int, generation: int) -> int:
    """The epoch an owner writes a partition's records under: above every epoch marked
    on it when it read it (`fence`), then by the group's generation. A deposed owner
    read no more than its successor, and had an older generation: its epoch is lower,
    and a group generation that starts again (a group recreated) still moves up."""
    return ((fence >> 32) + 1) << 32 | max(0, generation) & 0xFFFFFFFF


def tombstone(state: AggregateState) -> bool:
    """A deleted trunk, route or PBX: written with no value (a catalog is never deleted)."""
    return state.settings is None and state.kind != CATALOG


def _header(record: Any, name: str) -> bytes | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value)
    return None


def _deleted(record: Any) -> AggregateState:
    """A tombstone's aggregate: settings None, at the version it was deleted."""
    return AggregateState((_header(record, TENANT_HEADER) or b"").decode(),
                          UUID(record.key.decode()),
                          (_header(record, KIND_HEADER) or b"").decode(),
                          _version(record, None))


def _epoch(record: Any) -> int:
    epoch = _header(record, EPOCH_HEADER)
    return -1 if epoch is None else int(epoch)  # -1: written before epochs


def _version(record: Any, codec: AvroCodec | None) -> int:
    version = _header(record, VERSION_HEADER)
    if version is not None:
        return int(version)
    if record.value is None or codec is None:
        return -1
    state = codec.decode(record.value).value  # written without the header
    return state.version if isinstance(state, AggregateState) else -1


def restore(kafka: KafkaSettings, codec: AvroCodec, state: Snapshots,
            partitions: Sequence[int], fences: dict[int, int] | None = None
            ) -> dict[int, int]:
    """A new owner's start: the partitions' tenants from the state topic into `state`.
    Returns the offset to read each partition's events from (a partition absent: no
    position recorded yet, read it from the start). `fences`: the writer's (its epochs
    start above them)."""
    started = time.monotonic()
    states, positions = read_state(kafka, codec, partitions, fences=fences)
    taken = sum(state.restore(p, states.get(p, []), positions.get(p)) for p in partitions)
    log.info("partitions %s: %d aggregates from %s in %.2f s; events from offsets %s",
             sorted(partitions), taken, kafka.state_topic, time.monotonic() - started,
             {p: positions.get(p, 0) for p in sorted(partitions)})
    return positions
