"""Take-over time against the length of the history: N register trunks, each with 1 event
and then with E events (E-1 description changes after its creation), split between two
`trunkplane agent` processes against a Kamailio registrar; one agent is killed (SIGKILL)
and the time until the other has every trunk registered again is measured (its own
`registered` report of each trunk on the status topic, which it sends on Kamailio's 200;
Kamailio's location statistics then show one binding per trunk), from the kill and from
the moment the group gave it the dead agent's partitions. With the state topic both histories should
take the same time; `--without-state` adds the longest history with the agents' snapshots
switched off (every take-over reads its partitions' events from the start), the cost
this replaces, in the same run.

Needs kamailio (make test installs it); starts tansu on loopback.
    python bench/takeover.py [--trunks 10000] [--events 1,100] [--without-state]"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import KafkaConsumer, TopicPartition

from common import machine
from domain.model import CommandMeta
from domain.status import StatusObservation, TrunkState
from domain.trunk import Trunk
from domain.trunk_settings import validate_trunk
from infra.config.settings import KafkaSettings
from infra.messaging.codec import AvroCodec, AvroError
from infra.messaging.topics import init_topics, producer
from infra.security.sealing import WireCipher
from tests.brokers import Broker, free_port
from tests.kamailio import Kamailio

PASSWORD = "Bench-Password-1234567"
META = CommandMeta(actor="bench", reason="", request_id="")
PARTITIONS = 12
SESSION_TIMEOUT = 4.0
SPREAD = 1.0
TRUNKPLANE = str(Path(sys.executable).parent / "trunkplane")


@dataclass
class Agent:
    name: str
    process: subprocess.Popen[bytes]
    sip_port: int
    metrics_port: int
    log: Path

    def metric(self, name: str) -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                        timeout=5) as answer:
                text = answer.read().decode()
        except OSError:
            return -1.0
        found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else -1.0

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)


class Reports:
    """The newest report of each trunk on the status topic: which agent, what state."""

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec) -> None:
        self.codec = codec
        self.newest: dict[str, tuple[str, TrunkState]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap,
                                       enable_auto_commit=False, max_poll_records=10000)
        parts = [TopicPartition(kafka.status_topic, p) for p in range(PARTITIONS)]
        self._consumer.assign(parts)
        self._consumer.seek_to_beginning(*parts)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            for records in self._consumer.poll(timeout_ms=100).values():
                for record in records:
                    try:
                        value = self.codec.decode(record.value).value
                    except AvroError:
                        continue
                    if isinstance(value, StatusObservation):
                        with self._lock:
                            self.newest[value.trunk_id] = (value.agent_id, value.state)

    def registered(self, agent: str | None = None) -> int:
        """Trunks whose newest report is `registered` (by `agent`, if given)."""
        with self._lock:
            return sum(1 for who, state in self.newest.values()
                       if state == TrunkState.REGISTERED and agent in (None, who))

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._consumer.close()


def produce(kafka: KafkaSettings, codec: AvroCodec, trunks: int, events: int, tenants: int,
            registrar: int) -> float:
    """Every trunk created, then changed events-1 times, in rounds (the newest change of
    each trunk near the end of the topic); returns the seconds it took. With more than one
    event a trunk is created disabled and its last event enables it: it registers only
    once its current state is known (an agent reading the history from the start registers
    it only after reading its last change)."""
    started = time.perf_counter()
    settings, _ = validate_trunk({"name": "t", "type": "register",
                                  "host": f"127.0.0.1:{registrar}", "username": "u0",
                                  "password": PASSWORD, "codecs": ["PCMU"],
                                  "enabled": events == 1})
    aggregates = [Trunk.create(f"tenant-{n % tenants:03d}",
                               {**settings, "name": f"trunk-{n}", "username": f"u{n}"}, META)
                  for n in range(trunks)]
    out = producer(kafka, "bench-takeover")
    position = 0
    for round_number in range(events):
        for aggregate in aggregates:
            if round_number == events - 1 and round_number:
                aggregate.change_settings({**aggregate.settings, "enabled": True}, META)
            elif round_number:
                aggregate.change_settings(
                    {**aggregate.settings, "description": f"change {round_number}"}, META)
            for event in aggregate.collect_events():
                position += 1
                out.send(kafka.events_topic, key=aggregate.tenant.encode(),
                         value=codec.encode_event(event, position, aggregate.tenant))
        out.flush(timeout=120)
    out.close(timeout=30)
    return time.perf_counter() - started


def start_agent(name: str, kafka: KafkaSettings, workdir: Path, state_every: float) -> Agent:
    sip_port, metrics_port = free_port(), free_port()
    log = workdir / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUNKPLANE_")}
    env.update({
        "TRUNKPLANE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "TRUNKPLANE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "TRUNKPLANE_KAFKA_PARTITIONS": str(PARTITIONS), "TRUNKPLANE_KAFKA_REPLICATION": "1",
        "TRUNKPLANE_WIRE_KEY": kafka.wire_key, "TRUNKPLANE_AGENT_ID": name,
        "TRUNKPLANE_AGENT_SESSION_TIMEOUT": str(SESSION_TIMEOUT),
        "TRUNKPLANE_AGENT_HEARTBEAT": "1", "TRUNKPLANE_AGENT_HANDOVER_WAIT": "0",
        "TRUNKPLANE_AGENT_STATE_EVERY": str(state_every),
        "TRUNKPLANE_SIP_STARTUP_SPREAD": str(SPREAD),
        "TRUNKPLANE_SIP_LISTEN": f"127.0.0.1:{sip_port}",
        "TRUNKPLANE_SIP_DESTINATIONS": "127.0.0.0/8", "TRUNKPLANE_PBX_LISTEN": "off",
        "TRUNKPLANE_LISTEN": f"127.0.0.1:{free_port()}",
        "TRUNKPLANE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        "TRUNKPLANE_TLS": "off", "TRUNKPLANE_WEB_LISTEN": "off",
        "TRUNKPLANE_LOG_LEVEL": "INFO", "TRUNKPLANE_DATA": str(workdir / name)})
    process = subprocess.Popen([TRUNKPLANE, "agent"], env=env, stdout=subprocess.DEVNULL,
                               stderr=log.open("w"))
    return Agent(name, process, sip_port, metrics_port, log)


def wait(what: str, test: object, timeout: float, agents: list[Agent]) -> None:
    deadline = time.monotonic() + timeout
    while not test():  # type: ignore[operator]
        for agent in agents:
            if agent.process.poll() is not None:
                raise SystemExit(f"{agent.name} exited: {agent.log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.1)


def scenario(broker: Broker, workdir: Path, trunks: int, events: int, tenants: int,
             state_every: float, profile: Path | None = None) -> dict[str, float]:
    kafka = KafkaSettings(bootstrap=broker.bootstrap,
                          topic_prefix=f"take{uuid.uuid4().hex[:6]}.", partitions=PARTITIONS,
                          replication=1, wire_key=f"w1:{WireCipher.new_key()}")
    init_topics(kafka)
    codec = AvroCodec(WireCipher(kafka.wire_key))
    workdir.mkdir(parents=True)
    with Kamailio(workdir / "kamailio", {f"u{n}": PASSWORD for n in range(trunks)},
                  children=4) as registrar:
        produced = produce(kafka, codec, trunks, events, tenants, registrar.udp)
        total = trunks * events
        reports = Reports(kafka, codec)
        agents = [start_agent(n, kafka, workdir, state_every) for n in ("agent-a", "agent-b")]
        doomed, survivor = agents
        try:
            loading = time.perf_counter()
            wait("both agents to read every event", lambda: sum(
                max(0.0, a.metric("trunkplane_agent_events_read")) for a in agents) >= total,
                3600, agents)
            wait("every trunk registered", lambda: reports.registered() == trunks, 600, agents)
            loaded = time.perf_counter() - loading
            if state_every < 1000:  # the snapshots of everything read are out
                wait("the snapshots written", lambda: sum(
                    a.metric("trunkplane_agent_snapshots_written") for a in agents) >= trunks,
                    600, agents)
                time.sleep(2 * state_every + 1)
            moved = int(doomed.metric("trunkplane_agent_trunks"))
            read_before = survivor.metric("trunkplane_agent_events_read")
            restored_before = survivor.metric("trunkplane_agent_snapshots_restored")
            load = os.getloadavg()[0]
            killed = time.perf_counter()
            doomed.kill()
            spy = None if profile is None else subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record",
                 "--pid", str(survivor.process.pid), "--format", "raw",
                 "--threads", "--nonblocking", "--rate", "50", "--duration", "60",
                 "--output", str(profile / f"takeover-{events}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assigned = 0.0
            deadline = time.monotonic() + 600
            while reports.registered(survivor.name) < trunks:
                if not assigned and survivor.metric("trunkplane_agent_partitions") == PARTITIONS:
                    assigned = time.perf_counter()
                if time.monotonic() > deadline or survivor.process.poll() is not None:
                    raise SystemExit(f"take-over not done: {survivor.log.read_text()[-3000:]}")
                time.sleep(0.1)
            done = time.perf_counter()
            assigned = assigned or done
            if spy is not None and profile is not None:
                spy.send_signal(signal.SIGINT)  # writes what it sampled so far
                spy.wait(timeout=60)
                (profile / f"survivor-{events}.log").write_text(survivor.log.read_text())
            users, contacts = registrar.location_counts()
            return {"bindings": contacts, "users": users, "load": load,
                "events": total, "produced_s": produced, "loaded_s": loaded, "moved": moved,
                "from_kill_s": done - killed, "from_assignment_s": done - assigned,
                "events_read": survivor.metric("trunkplane_agent_events_read") - read_before,
                "restored": (survivor.metric("trunkplane_agent_snapshots_restored")
                             - restored_before)}
        finally:
            for agent in agents:
                agent.kill()
            reports.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trunks", type=int, default=10_000)
    parser.add_argument("--events", default="1,100", help="events per trunk, each a run")
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--without-state", action="store_true",
                        help="also the longest history with snapshots off (from the start)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="a folder for py-spy's samples of the survivor from the kill "
                             "(collapsed stacks) and its log")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    histories = [int(e) for e in args.events.split(",")]
    print(machine())
    print(f"{args.trunks:,} register trunks of {args.tenants} tenants, {PARTITIONS} "
          f"partitions, 2 agents, one SIGKILLed; session timeout {SESSION_TIMEOUT:g} s, "
          f"registration spread {SPREAD:g} s; tansu on loopback, Kamailio (4 workers)")
    runs = [(events, 1.0) for events in histories]
    if args.without_state:
        runs.append((max(histories), 1e9))
    results = []
    with tempfile.TemporaryDirectory() as tmp, Broker(Path(tmp) / "tansu.log") as broker:
        for number, (events, every) in enumerate(runs):
            r = scenario(broker, Path(tmp) / f"run{number}", args.trunks, events,
                         args.tenants, every, args.profile)
            results.append(r)
            label = "state topic" if every < 1000 else "no snapshots (from the start)"
            print(f"{events:>4} events/trunk ({int(r['events']):,} events), {label}: "
                  f"{int(r['moved']):,} trunks moved; registered at the survivor "
                  f"{r['from_kill_s']:.1f} s after the kill, {r['from_assignment_s']:.1f} s "
                  f"after its assignment; it read {int(r['events_read']):,} events and "
                  f"{int(r['restored']):,} snapshots; Kamailio: {int(r['bindings']):,} bindings of "
                  f"{int(r['users']):,} users; load average {r['load']:.1f} (history produced in "
                  f"{r['produced_s']:.0f} s, loaded and registered in {r['loaded_s']:.0f} s)",
                  flush=True)
    with_state = results[:len(histories)]
    if len(with_state) > 1:
        shortest, longest = with_state[0], with_state[-1]
        ratio = longest["from_assignment_s"] / shortest["from_assignment_s"]
        print(f"take-over after assignment, {histories[-1]} vs {histories[0]} events/trunk: "
              f"ratio {ratio:.2f} (target within 20%: 0.8 - 1.2); longest "
              f"{longest['from_kill_s']:.1f} s from the kill (target under 10 s)")


if __name__ == "__main__":
    main()
