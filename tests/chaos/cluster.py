"""A distributed trunkplane as an SRE runs it, for the chaos suite: `kafka init`, one or
two `trunkplane control` processes on PostgreSQL, several `trunkplane agent` processes,
a tansu broker and a Kamailio registrar, every one a real process on loopback ports of its
own. Timings are scaled down with settings (session timeout, heartbeats, hand-over wait),
never by loosening what the tests assert."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from tests.brokers import free_port
from tests.conftest import WIRE_KEY
from tests.integration.test_cli import CLI
from trunkplane.v1 import ops_pb2, ops_pb2_grpc, trunk_pb2, trunk_pb2_grpc

PASSWORD = "Chaos-Password-Long-Enough"
SESSION_TIMEOUT = 6.0  # the agents' consumer group session (tansu joins in about half)
TIMINGS = {
    "TRUNKPLANE_AGENT_SESSION_TIMEOUT": str(SESSION_TIMEOUT),
    "TRUNKPLANE_AGENT_HEARTBEAT": "1",
    "TRUNKPLANE_AGENT_HANDOVER_WAIT": "20",
    "TRUNKPLANE_SIP_STARTUP_SPREAD": "1",
}


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait(what: str, test: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = test()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(every)


@dataclass
class Process:
    """One trunkplane process: its command, environment, log, and life."""

    name: str
    command: str
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    exits: list[int] = field(default_factory=list)

    def start(self) -> Process:
        self.popen = subprocess.Popen([*CLI, self.command], env=self.env,
                                      stdout=subprocess.DEVNULL, stderr=self.log.open("a"))
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as a deploy does; waits for the exit."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(timeout=timeout)
        self.exits.append(code)
        return code

    def kill(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.exits.append(self.popen.wait(timeout=10))

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


class MemoryWatch:
    """Resident memory of processes, sampled every `every` seconds on a thread: the
    first sample, the peak and the last, per process name."""

    def __init__(self, processes: dict[str, int], every: float = 0.5) -> None:
        self.processes = processes
        self.first = {n: rss_mib(p) for n, p in processes.items()}
        self.peak = dict(self.first)
        self.last = dict(self.first)
        self.marks: dict[str, dict[str, float]] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(0.5):
            for name, pid in self.processes.items():
                self.last[name] = rss_mib(pid)
                self.peak[name] = max(self.peak[name], self.last[name])

    def mark(self, label: str) -> None:
        self.marks[label] = {n: rss_mib(p) for n, p in self.processes.items()}

    def grown(self, since: str, until: str) -> float:
        """The most any process grew between two marks."""
        return max(self.marks[until][n] - self.marks[since][n] for n in self.processes)

    def stop(self) -> dict[str, object]:
        """Figures: the largest growth (peak - first) of any process, and after."""
        self._stopping.set()
        self._thread.join(timeout=5)
        growth = {n: self.peak[n] - self.first[n] for n in self.processes}
        worst = max(growth, key=lambda n: growth[n])
        return {"largest_rss_mib": max(self.peak.values()),
                "most_growth_mib": growth[worst], "most_growth_in": worst,
                "growth_kept_mib": max(self.last[n] - self.first[n] for n in self.processes)}


class Cluster:
    def __init__(self, workdir: Path, database_url: str, bootstrap: str, registrar_port: int,
                 prefix: str = "chaos.") -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.registrar_port = registrar_port
        self.kafka = {"TRUNKPLANE_KAFKA_BOOTSTRAP": bootstrap,
                      "TRUNKPLANE_KAFKA_TOPIC_PREFIX": prefix,
                      "TRUNKPLANE_KAFKA_PARTITIONS": "12", "TRUNKPLANE_KAFKA_REPLICATION": "1",
                      "TRUNKPLANE_WIRE_KEY": f"w1:{WIRE_KEY}"}
        self.controls: list[Process] = []
        self.agents: dict[str, Process] = {}
        self.sip_ports: dict[str, int] = {}
        self.control_port = 0
        self._channel: grpc.Channel | None = None
        self.token = ""

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRUNKPLANE_")}
        return {**env, **self.kafka, **TIMINGS, "TRUNKPLANE_TLS": "off",
                "TRUNKPLANE_WEB_LISTEN": "off",
                "TRUNKPLANE_LOG_LEVEL": "INFO",
                "TRUNKPLANE_SIP_DESTINATIONS": "127.0.0.0/8,::1/128"}

    def init_topics(self) -> str:
        done = subprocess.run([*CLI, "kafka", "init"], env=self.base_env(), capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    # --- control planes -------------------------------------------------------------------

    def control_env(self, name: str, **extra: str) -> dict[str, str]:
        data = self.workdir / name
        data.mkdir(parents=True, exist_ok=True)
        return {**self.base_env(), "TRUNKPLANE_DATA": str(data / "var"),
                "TRUNKPLANE_DATABASE_URL": self.database_url,
                "TRUNKPLANE_CIPHER_KEY": CIPHER_KEY,
                "TRUNKPLANE_LISTEN": f"127.0.0.1:{free_port()}",
                "TRUNKPLANE_METRICS_LISTEN": f"127.0.0.1:{free_port()}", **extra}

    def start_control(self, name: str = "control-1", **extra: str) -> Process:
        process = Process(name, "control", self.control_env(name, **extra),
                          self.workdir / f"{name}.log").start()
        wait(f"{name} serving", lambda: (process.alive() and "serving gRPC on" in
             process.log.read_text()) or not process.alive(), 60)
        assert process.alive(), process.tail()
        self.controls.append(process)
        if not self.control_port:
            self.control_port = int(process.env["TRUNKPLANE_LISTEN"].rsplit(":", 1)[1])
            self.token = (Path(process.env["TRUNKPLANE_DATA"]) / "admin.token").read_text(
                ).strip()
        return process

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(f"127.0.0.1:{self.control_port}")
        return self._channel

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    def create_trunks(self, tenants: int, per_tenant: int) -> dict[str, str]:
        """Register trunks, one Kamailio user each; returns user -> tenant."""
        stub = trunk_pb2_grpc.TrunkServiceStub(self.channel())
        users = {}
        for t in range(tenants):
            for n in range(per_tenant):
                user = f"u{t:02d}{n:03d}"
                stub.CreateTrunk(trunk_pb2.CreateTrunkRequest(tenant=f"tenant-{t:02d}",
                                 trunk=trunk_pb2.Trunk(
                                     name=f"trunk-{n:03d}", type="register",
                                     host=f"127.0.0.1:{self.registrar_port}",
                                     username=user, password=PASSWORD, codecs=["PCMU"])),
                                 metadata=self.metadata(), timeout=30)
                users[user] = f"tenant-{t:02d}"
        return users

    def statuses(self, tenant: str) -> list[Any]:
        stub = trunk_pb2_grpc.TrunkServiceStub(self.channel())
        answer = stub.ListTrunkStatuses(trunk_pb2.ListTrunksRequest(
            tenant=tenant, page_size=500, min_position=-1), metadata=self.metadata(),
            timeout=10)
        return list(answer.statuses)

    def directory(self) -> list[Any]:
        stub = ops_pb2_grpc.OpsServiceStub(self.channel())
        return list(stub.ListAgents(ops_pb2.ListAgentsRequest(), metadata=self.metadata(),
                                    timeout=10).agents)

    # --- agents ---------------------------------------------------------------------------

    def agent_env(self, name: str) -> dict[str, str]:
        data = self.workdir / name
        data.mkdir(parents=True, exist_ok=True)
        port = self.sip_ports.setdefault(name, free_port())
        # only the wire key: no database, no cipher key
        return {**self.base_env(), "TRUNKPLANE_DATA": str(data / "var"),
                "TRUNKPLANE_AGENT_ID": name, "TRUNKPLANE_SIP_LISTEN": f"127.0.0.1:{port}",
                "TRUNKPLANE_PBX_LISTEN": "127.0.0.1:0",
                "TRUNKPLANE_LISTEN": f"127.0.0.1:{free_port()}",
                "TRUNKPLANE_METRICS_LISTEN": "off"}

    def start_agent(self, name: str) -> Process:
        process = Process(name, "agent", self.agent_env(name), self.workdir / f"{name}.log")
        self.agents[name] = process.start()
        return process

    def holders(self) -> dict[str, list[str]]:
        """Tenant -> the live agents that say they hold it."""
        held: dict[str, list[str]] = {}
        for agent in self.directory():
            if agent.agent_id in self.agents and self.agents[agent.agent_id].alive() and (
                    not agent.stale):
                for tenant in agent.tenants:
                    held.setdefault(tenant, []).append(agent.agent_id)
        return held

    def settled(self, tenants: list[str], agents: list[str]) -> bool:
        """Every tenant held by exactly one of `agents`, and each of them holds some."""
        held = self.holders()
        owners = {a for t in tenants for a in held.get(t, [])}
        return all(len(held.get(t, [])) == 1 for t in tenants) and owners == set(agents)

    def stop(self) -> None:
        for process in [*self.agents.values(), *self.controls]:
            if process.alive():
                try:
                    process.stop(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        if self._channel is not None:
            self._channel.close()


CIPHER_KEY = "x8IuD0sEXGOXjG8ygnTpGaYgk9ip3kmMOW71V7tKmXQ="
