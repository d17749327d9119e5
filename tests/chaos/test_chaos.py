"""The chaos suite: what SREs do to the distributed mode, against tansu, PostgreSQL and
Kamailio, every part a real process. 300 register trunks across twelve tenants, three
agents; Kamailio's location table sampled every 100 ms. Each scenario prints its figures
(the README's distributed section quotes them) and asserts the promise it tests.

The scenarios share one cluster and run in file order: each leaves it settled."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.brokers import Broker
from tests.chaos.cluster import PASSWORD, SESSION_TIMEOUT, Cluster, wait
from tests.chaos.registrar import LocationSampler
from tests.kamailio import Kamailio

TENANTS = [f"tenant-{t:02d}" for t in range(12)]
PER_TENANT = 25
AGENTS = ["agent-1", "agent-2", "agent-3"]
SPARE = "spare"  # a registrar user no trunk of the twelve tenants uses


@dataclass
class Rig:
    cluster: Cluster
    registrar: Kamailio
    sampler: LocationSampler
    broker: Broker
    users: dict[str, str]  # Kamailio user -> tenant

    def bound_to_live_agents(self) -> bool:
        """Every trunk's user has exactly one binding, at a live agent's SIP port."""
        live = {port for name, port in self.cluster.sip_ports.items()
                if self.cluster.agents[name].alive()}
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
    admin = os.environ.get("TRUNKPLANE_TEST_DATABASE_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        connection = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if os.environ.get("TRUNKPLANE_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"no PostgreSQL at {admin} ({error})")
    name = f"trunkplane_chaos_{uuid.uuid4().hex[:10]}"
    with connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield admin.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("chaos")
    users = {f"u{t:02d}{n:03d}": PASSWORD for t in range(len(TENANTS))
             for n in range(PER_TENANT)} | {SPARE: PASSWORD}
    broker = Broker(work / "tansu.log")
    registrar = Kamailio(work / "kamailio", users, max_expires=3600, location_db=True)
    cluster = Cluster(work, database, broker.bootstrap, registrar.udp)
    try:
        cluster.init_topics()
        cluster.start_control()
        started = time.monotonic()
        tenants_of = cluster.create_trunks(len(TENANTS), PER_TENANT)
        created = time.monotonic() - started
        for name in AGENTS:
            cluster.start_agent(name)
        sampler = LocationSampler(registrar, sorted(tenants_of)).start()
        rig = Rig(cluster, registrar, sampler, broker, tenants_of)
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

        wait(f"{name}'s tenants with the others", moved, 60)
        cluster.start_agent(name)
        wait(f"{name} back with a share", lambda: cluster.settled(TENANTS, AGENTS), 60)
        wait("every trunk bound once at a live agent", rig.bound_to_live_agents, 30)
    figures = rig.sampler.figures()
    report("rolling restart of 3 agents", {**figures, "slowest_stop_s": max(stops)})
    assert rig.sampler.failures == 0, rig.sampler.last_error
    assert figures["most_bindings"] == 1  # never two bindings for one registration
    assert figures["most_gaps"] <= 1 and figures["longest_gap_s"] < 2.0


def test_a_killed_agent_leaves_no_duplicate_and_no_false_status(rig: Rig) -> None:
    cluster = rig.cluster
    victim = "agent-2"
    held = [t for t, owners in cluster.holders().items() if victim in owners]
    assert held
    rig.sampler.reset()
    cluster.agents[victim].kill()
    killed = time.monotonic()
    shown_registered = 0.0  # the last moment trunk status still said registered by it
    while not rig.bound_to_live_agents():
        for tenant in held:
            if any(s.agent_id == victim and s.state == "registered"
                   for s in cluster.statuses(tenant)):
                shown_registered = time.monotonic() - killed
        assert time.monotonic() - killed < SESSION_TIMEOUT + 30, cluster.holders()
        time.sleep(0.25)
    moved = time.monotonic() - killed
    figures = rig.sampler.figures()
    report("SIGKILL of an agent", {"tenants_moved": len(held), "rebound_all_s": moved,
                                   "status_registered_after_kill_s": shown_registered,
                                   "session_timeout_s": SESSION_TIMEOUT, **figures})
    assert figures["most_bindings"] == 1
    assert moved <= SESSION_TIMEOUT + 10  # the session timeout plus a few seconds
    assert shown_registered <= SESSION_TIMEOUT
    cluster.start_agent(victim)
    wait("the agent back with a share", lambda: cluster.settled(TENANTS, AGENTS), 60)
    wait("every trunk bound once at a live agent", rig.bound_to_live_agents, 30)


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
