"""The chaos suite: what SREs do to the distributed mode, against tansu, PostgreSQL and
Kamailio, every part a real process. 300 register trunks across twelve tenants, three
agents; Kamailio's location table sampled every 100 ms. Each scenario prints its figures
(the README's distributed section quotes them) and asserts the promise it tests.

The scenarios share one cluster and run in file order: each leaves it settled."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.brokers import Broker
from tests.chaos.cluster import (
    PASSWORD,
    SESSION_TIMEOUT,
    Cluster,
    MemoryWatch,
    Process,
    wait,
)
from tests.chaos.registrar import LocationSampler
from tests.conftest import scratch_database
from tests.kamailio import Kamailio

TENANTS = [f"tenant-{t:02d}" for t in range(12)]
PER_TENANT = 25
AGENTS = ["agent-1", "agent-2", "agent-3"]
# How long the broker stays frozen, then away: 60 s as the issue asks; shorter only by hand
BROKER_AWAY = float(os.environ.get("TRUNKPLANE_CHAOS_BROKER_AWAY", "60"))
SPARE = "spare"  # registrar users no trunk of the twelve tenants uses
SPARES = (SPARE, "spare-freeze", "spare-emptied")


@dataclass
class Rig:
    cluster: Cluster
    registrar: Kamailio
    sampler: LocationSampler
    brokers: list[Broker]  # the one running last
    users: dict[str, str]  # Kamailio user -> tenant

    @property
    def broker(self) -> Broker:
        return self.brokers[-1]

    def bound_to_live_agents(self) -> bool:
        """Every trunk's user has exactly one binding, at a live agent's SIP port."""
        agents = self.cluster.agents
        live = {port for name, port in self.cluster.sip_ports.items()
                if name in agents and agents[name].alive()}
        bound = {u: c for u, c in self.registrar.locations().items() if u in self.users}
        return set(bound) == set(self.users) and all(
            len(contacts) == 1 and _port(contacts[0]) in live for contacts in bound.values())


def _port(contact: str) -> int:
    return int(contact.split("@", 1)[1].split(";")[0].rsplit(":", 1)[1])


def report(title: str, figures: dict[str, object]) -> None:
    shown = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in figures.items())
    print(f"\nCHAOS {title}: {shown}")


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with scratch_database("trunkplane_chaos_") as url:
        yield url


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("chaos")
    users = {f"u{t:02d}{n:03d}": PASSWORD for t in range(len(TENANTS))
             for n in range(PER_TENANT)} | dict.fromkeys(SPARES, PASSWORD)
    brokers = [Broker(work / "tansu.log")]
    registrar = Kamailio(work / "kamailio", users, max_expires=3600, location_db=True)
    cluster = Cluster(work, database, brokers[0].bootstrap, registrar.udp)
    try:
        cluster.init_topics()
        cluster.start_control()
        started = time.monotonic()
        tenants_of = cluster.create_trunks(len(TENANTS), PER_TENANT)
        created = time.monotonic() - started
        for name in AGENTS:
            cluster.start_agent(name)
        sampler = LocationSampler(registrar, sorted(tenants_of)).start()
        rig = Rig(cluster, registrar, sampler, brokers, tenants_of)
        wait("three agents sharing twelve tenants", lambda: cluster.settled(TENANTS, AGENTS),
             90)
        wait("300 trunks registered once each", rig.bound_to_live_agents, 60)
        report("bring-up", {"trunks": len(tenants_of), "created_s": created,
                            "up_s": time.monotonic() - started})
        yield rig
        sampler.stop()
    finally:
        cluster.stop()
        registrar.stop()
        for broker in brokers:
            broker.stop()


def test_a_rolling_restart_keeps_every_registration(rig: Rig) -> None:
    cluster = rig.cluster
    rig.sampler.reset()
    stops = []
    for name in AGENTS:
        started = time.monotonic()
        assert cluster.agents[name].stop() == 0, cluster.agents[name].tail()
        stops.append(time.monotonic() - started)
        others = [a for a in AGENTS if a != name]

        def moved(others: list[str] = others) -> bool:
            return cluster.settled(TENANTS, others)

        wait(f"{name}'s tenants with the others", moved, 120)
        cluster.start_agent(name)
        wait(f"{name} back with a share", lambda: cluster.settled(TENANTS, AGENTS), 120)
        wait("every trunk bound once at a live agent", rig.bound_to_live_agents, 30)
    figures = rig.sampler.figures()
    report("rolling restart of 3 agents", {**figures, "slowest_stop_s": max(stops)})
    assert rig.sampler.failures == 0, rig.sampler.last_error
    assert figures["most_bindings"] == 1  # never two bindings for one registration
    assert figures["most_gaps"] <= 1 and figures["longest_gap_s"] < 2.0


def test_a_killed_agent_leaves_no_duplicate_and_no_false_status(rig: Rig) -> None:
    """The promises: never two bindings for one registration (sampled throughout), and
    `trunk status` never shows the dead agent's trunks registered past the session
    timeout. How soon every binding points at a live agent again is a figure (session
    timeout, the group's join, the new owner's registrations), bounded loosely since it
    depends on the machine's load."""
    cluster = rig.cluster
    victim = "agent-2"
    held = [t for t, owners in cluster.holders().items() if victim in owners]
    assert held
    rig.sampler.reset()
    cluster.agents[victim].kill()
    killed = time.monotonic()
    shown_registered = 0.0  # the last moment trunk status still said registered by it
    try:
        while not rig.bound_to_live_agents():
            for tenant in held:
                if any(s.agent_id == victim and s.state == "registered"
                       for s in cluster.statuses(tenant)):
                    shown_registered = time.monotonic() - killed
            assert time.monotonic() - killed < SESSION_TIMEOUT + 40, cluster.holders()
            time.sleep(0.25)
        moved = time.monotonic() - killed
        figures = rig.sampler.figures()
        report("SIGKILL of an agent", {"tenants_moved": len(held), "rebound_all_s": moved,
                                       "status_registered_after_kill_s": shown_registered,
                                       "session_timeout_s": SESSION_TIMEOUT, **figures})
        assert figures["most_bindings"] == 1
        assert shown_registered <= SESSION_TIMEOUT
    finally:  # the next scenarios need the three agents
        cluster.start_agent(victim)
        wait("the agent back with a share", lambda: cluster.settled(TENANTS, AGENTS), 120)
        wait("every trunk bound once at a live agent", rig.bound_to_live_agents, 60)


def test_an_out_of_order_and_duplicated_feed_loses_no_trunk(rig: Rig) -> None:
    """As after a broker came back empty and the relay republished: a trunk's update
    reaches the agent before its create, and both come twice."""
    from kafka import KafkaProducer

    from domain import commands
    from domain.application import TrunkplaneApp
    from domain.model import CommandMeta
    from infra.messaging.codec import AvroCodec
    from infra.security.sealing import WireCipher
    from tests.conftest import WIRE_KEY

    app = TrunkplaneApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    meta = CommandMeta(actor="chaos")
    tenant = "tenant-ooo"
    first = {"name": "late", "type": "register", "username": "nobody", "password": PASSWORD,
             "host": f"127.0.0.1:{rig.registrar.udp}", "codecs": ["PCMU"]}

    def run(command: object, *args: object) -> None:
        def step(uow: object) -> object:
            return command(uow, *args)  # type: ignore[operator]
        app.execute(step).unwrap()

    run(commands.create_trunk, tenant, first, "", meta)
    run(commands.update_trunk, tenant, "late", {"username": SPARE}, "", meta)
    run(commands.update_trunk, tenant, "late", {"description": "moved"}, "", meta)
    events = [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(0, 99)]
    trunk_events = [e for e in events if type(e).__qualname__.startswith("Trunk.")]
    assert [e.originator_version for e in trunk_events] == [1, 2, 3]
    codec = AvroCodec(WireCipher(f"w1:{WIRE_KEY}"))
    created, changed, described = trunk_events
    producer = KafkaProducer(bootstrap_servers=rig.broker.bootstrap, acks="all")
    topic = rig.cluster.kafka["TRUNKPLANE_KAFKA_TOPIC_PREFIX"] + "events"
    for position, event in ((3, described), (2, changed), (2, changed), (1, created),
                            (1, created), (3, described)):
        producer.send(topic, key=tenant.encode(),
                      value=codec.encode_event(event, 10_000_000 + position, tenant))
    producer.flush(timeout=30)
    producer.close()
    app.close()
    started = time.monotonic()
    wait("the trunk registered with the username of its update",
         lambda: len(rig.registrar.locations().get(SPARE, [])) == 1, 40)
    report("out-of-order feed", {"events": 6, "registered_after_s":
                                 time.monotonic() - started})


def test_a_wrong_cipher_key_or_wire_key_stops_the_process_at_start(rig: Rig) -> None:
    cluster = rig.cluster
    other = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    control = Process("control-bad", "control", cluster.control_env(
        "control-bad", TRUNKPLANE_CIPHER_KEY=other), cluster.workdir / "control-bad.log")
    control_exit = _exit_of(control.start())
    assert control_exit == 11, control.tail()  # the CLI's code for wrong settings
    assert "TRUNKPLANE_CIPHER_KEY (or the data directory's key file) does not open the " \
           "stored events" in control.tail()
    agent = Process("agent-bad", "agent", {**cluster.agent_env("agent-bad"),
                    "TRUNKPLANE_WIRE_KEY": f"w1:{other}"}, cluster.workdir / "agent-bad.log")
    agent_exit = _exit_of(agent.start())
    assert agent_exit == 11, agent.tail()
    assert "does not open the passwords on chaos.events" in agent.tail()
    report("wrong keys", {"control_exit": control_exit, "agent_exit": agent_exit})


def _exit_of(process: Process) -> int:
    assert process.popen is not None
    return process.popen.wait(timeout=60)


def test_two_control_planes_start_together_on_an_empty_database(rig: Rig,
                                                                 database: str) -> None:
    cluster = rig.cluster
    empty = database + "_empty"
    admin = database.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{empty.rsplit("/", 1)[1]}"')
    try:
        planes = [Process(name, "control", cluster.control_env(
            name, TRUNKPLANE_DATABASE_URL=empty), cluster.workdir / f"{name}.log")
            for name in ("twin-1", "twin-2")]
        for plane in planes:
            plane.start()
        for plane in planes:
            def up(plane: Process = plane) -> bool:
                return "serving gRPC on" in plane.log.read_text() or not plane.alive()

            wait(f"{plane.name} serving", up, 60)
            assert plane.alive(), plane.tail()
        codes = [plane.stop() for plane in planes]
        assert codes == [0, 0]
        report("two control planes on an empty database", {"started": 2})
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{empty.rsplit("/", 1)[1]}" '
                               "WITH (FORCE)")


def _processes(cluster: Cluster) -> dict[str, int]:
    return {p.name: p.pid for p in [*cluster.controls, *cluster.agents.values()] if p.alive()}


def _new_trunk(cluster: Cluster, tenant: str, name: str, user: str, port: int) -> None:
    from trunkplane.v1 import trunk_pb2, trunk_pb2_grpc

    trunk_pb2_grpc.TrunkServiceStub(cluster.channel()).CreateTrunk(trunk_pb2.CreateTrunkRequest(
        tenant=tenant, trunk=trunk_pb2.Trunk(name=name, type="register",
                                             host=f"127.0.0.1:{port}", username=user,
                                             password=PASSWORD, codecs=["PCMU"])),
        metadata=cluster.metadata(), timeout=30)


def _away(memory: MemoryWatch, since: float) -> None:
    """The broker's absence, with the memory marked halfway and at the end."""
    time.sleep(max(0.0, BROKER_AWAY / 2 - (time.monotonic() - since)))
    memory.mark("half")
    time.sleep(max(0.0, BROKER_AWAY - (time.monotonic() - since)))
    memory.mark("end")


def test_a_frozen_broker_loses_nothing_and_memory_stays_bounded(rig: Rig) -> None:
    cluster = rig.cluster
    rig.sampler.reset()
    memory = MemoryWatch(_processes(cluster))
    rig.broker.freeze()
    frozen = time.monotonic()
    _new_trunk(cluster, "tenant-03", "during-freeze", SPARES[1], rig.registrar.udp)
    _away(memory, frozen)
    rig.broker.thaw()
    thawed = time.monotonic()
    wait("the change made during the freeze on the wire",
         lambda: len(rig.registrar.locations().get(SPARES[1], [])) == 1, 120)
    caught_up = time.monotonic() - thawed
    wait("the agents settled again", lambda: cluster.settled(TENANTS, AGENTS), 120)
    time.sleep(5)  # what stays after the recovery
    figures = {**memory.stop(), **rig.sampler.figures(),
               "growth_second_half_mib": memory.grown("half", "end")}
    report(f"broker frozen {BROKER_AWAY:.0f} s", {"caught_up_s": caught_up, **figures})
    assert memory.grown("half", "end") < 10  # it levels off: bounded, not leaking
    assert figures["most_growth_mib"] < 96  # type: ignore[operator]
    assert figures["most_bindings"] == 1 and figures["users_with_gap"] == 0
    assert all(p.alive() for p in [*cluster.controls, *cluster.agents.values()])


def test_an_emptied_broker_is_detected_and_healed(rig: Rig) -> None:
    """The broker dies with its data (memory storage) and comes back empty after a
    while; the SRE runs `kafka init` again. The relay finds the topic empty and
    republishes the log; nothing registered goes away."""
    import urllib.request

    cluster = rig.cluster
    rig.sampler.reset()
    memory = MemoryWatch(_processes(cluster))
    port = rig.broker.port
    rig.broker.kill()
    gone = time.monotonic()
    _new_trunk(cluster, "tenant-05", "during-outage", SPARES[2], rig.registrar.udp)
    _away(memory, gone)
    # tansu makes any topic a client asks for (with 4 partitions), whatever the client
    # says; Kafka with auto-creation off (the compose sample) makes none. So the
    # processes are paused while the broker comes back and `kafka init` runs, as they
    # would find it with Kafka.
    paused = [p for p in [*cluster.controls, *cluster.agents.values()] if p.alive()]
    for process in paused:
        os.kill(process.pid, signal.SIGSTOP)
    try:
        rig.brokers.append(Broker(cluster.workdir / "tansu-2.log", port=port))
        made = cluster.init_topics()
    finally:
        for process in paused:
            os.kill(process.pid, signal.SIGCONT)
    back = time.monotonic()
    assert "created  chaos.events  12 partitions" in made
    wait("the change made during the outage on the wire",
         lambda: len(rig.registrar.locations().get(SPARES[2], [])) == 1, 120)
    healed = time.monotonic() - back
    wait("the agents settled again", lambda: cluster.settled(TENANTS, AGENTS), 120)
    control = cluster.controls[0]
    assert "holds no record, though positions up to" in control.log.read_text()
    metrics_at = control.env["TRUNKPLANE_METRICS_LISTEN"]
    with urllib.request.urlopen(f"http://{metrics_at}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    heals = float(text.split("\ntrunkplane_relay_heals ", 1)[1].split()[0])
    republished = float(text.split("\ntrunkplane_relay_republished_events ", 1)[1].split()[0])
    time.sleep(5)
    figures = {**memory.stop(), **rig.sampler.figures(),
               "growth_second_half_mib": memory.grown("half", "end")}
    report(f"broker away {BROKER_AWAY:.0f} s, back empty", {
        "healed_s": healed, "heals": heals, "republished": republished, **figures})
    assert heals >= 1 and republished >= 300
    assert memory.grown("half", "end") < 10
    assert figures["most_growth_mib"] < 96  # type: ignore[operator]
    assert figures["most_bindings"] == 1 and figures["users_with_gap"] == 0
    assert rig.bound_to_live_agents()


def test_doctor_tells_the_truth_about_the_cluster(rig: Rig) -> None:
    """Every tenant (or the one named), the relay's leader and lag, who owns which
    partition, and an agent that left cleanly told apart from a silent one."""
    import subprocess

    from tests.integration.test_cli import CLI

    cluster = rig.cluster
    assert cluster.agents["agent-3"].stop() == 0  # hands over, then announces it left
    wait("the others own every partition", lambda: cluster.settled(TENANTS, AGENTS[:2]), 120)
    control = cluster.controls[0]
    env = {**control.env, "TRUNKPLANE_TOKEN": cluster.token}
    server = ["--server", control.env["TRUNKPLANE_LISTEN"]]

    def doctor(*args: str) -> str:
        done = subprocess.run([*CLI, "doctor", *server, *args], env=env, capture_output=True,
                              text=True, timeout=180, check=False)
        return done.stdout + done.stderr

    every = doctor()
    assert all(re.search(rf"OK   tenant {t}: 2[56] trunks", every) for t in TENANTS), (
        every[-3000:])  # 26: the freeze and outage scenarios added one to two tenants
    assert "OK   relay: leader: backend " in every and "(lag 0)" in every
    assert "OK   consumer group trunkplane-agents: all 12 partitions of chaos.events " \
           "owned by live agents" in every
    assert "OK   agent agent-3: left cleanly" in every
    assert "OK   agent agent-1: alive" in every and "partitions " in every
    republish = subprocess.run([*CLI, "kafka", "republish", "--from", "0"], env=env,
                               capture_output=True, text=True, timeout=60, check=False)
    assert republish.returncode == 0, republish.stderr
    assert re.search(r"relay relay:\S+:chaos\.events: position \d+ -> 0", republish.stdout)
    wait("the relay republishing by hand", lambda: "position lowered by hand from" in
         control.log.read_text(), 30)
    one = doctor("--tenant", "tenant-07")
    assert "tenant tenant-07: 25 trunks" in one and "tenant tenant-06" not in one
    cluster.agents["agent-2"].kill()

    def flagged() -> str:
        found = doctor("--tenant", "tenant-07")
        return found if "FAIL agent agent-2: silent for" in found else ""

    silent = wait("agent-2 flagged silent", flagged, 30)
    report("doctor", {"tenants_checked": len(re.findall(r"OK   tenant \S+: \d+ trunks", every)),
                      "silent_flagged": "FAIL agent agent-2" in silent})
