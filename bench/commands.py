"""UpdateTrunk through gRPC (1 and 16 concurrent clients) against a bare `eventsourcing`
save of the same change, in the same run, on the same kind of store (SQLite file with the
same cipher and compressor). Prints commands/s, the composed limit of the two bare parts
(1 / (1/gRPC-alone + 1/bare-save), gRPC alone being a call that touches no store through the
same server) and the ratio to it, and the machine.

    .venv/bin/python bench/commands.py [--seconds 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc

import common
from common import KEY, machine
from domain.application import TrunkplaneApp
from domain.model import CommandMeta
from domain.trunk import Trunk
from infra.config.settings import Settings
from trunkplane.v1 import trunk_pb2, trunk_pb2_grpc

TRUNK: dict[str, Any] = {
    "name": "", "type": "register", "host": "sip.example.com", "username": "1001",
    "password": "Bench-Password-123456", "codecs": ["PCMU"]}


def bare_saves(directory: Path, seconds: float) -> float:
    """One event per save, straight into eventsourcing: the library's own rate."""
    directory.mkdir(parents=True)
    env = Settings(data_dir=directory, database_url="", cipher_key=KEY, listen="",
                   log_level="").store_env(KEY)
    app = TrunkplaneApp(env=env)
    trunk = Trunk.create("default", {**TRUNK, "name": "bare", "description": ""},
                         CommandMeta("bench"))
    app.save(trunk)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        trunk.trigger_event(Trunk.DescriptionChanged, description=f"n{count}",
                            actor="bench", reason="", request_id="")
        app.save(trunk)
        count += 1
    elapsed = time.perf_counter() - started
    app.close()
    return count / elapsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


CREDENTIALS: dict[str, Any] = {}


def connect(address: str) -> grpc.Channel:
    """A TLS channel to the bench server (calls carry `auth()` as metadata)."""
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(
        CREDENTIALS["certificate"]))


def auth() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {CREDENTIALS['token']}"),)


def server_env(directory: Path, address: str) -> dict[str, str]:
    """The bench server's settings. Its agent keeps SIP on, as in production, but may send
    only to loopback: it does not look up the trunks' made-up host (sip.example.com) nor
    register anywhere, it reports them unreachable."""
    env = common.server_env(
        directory, address, TRUNKPLANE_SIP_DESTINATIONS="127.0.0.0/8,::1/128",
        TRUNKPLANE_SIP_LISTEN="127.0.0.1:0", TRUNKPLANE_PBX_LISTEN="127.0.0.1:0")
    env.pop("TRUNKPLANE_DATABASE_URL", None)
    return env


def start_server(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    address = f"127.0.0.1:{free_port()}"
    env = server_env(directory, address)
    server = subprocess.Popen([str(Path(sys.executable).parent / "trunkplane"), "serve"],
                              env=env)
    deadline = time.monotonic() + 30
    while not ((directory / "admin.token").exists() and (directory / "tls.crt").exists()):
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the bench server did not start")
        time.sleep(0.05)
    CREDENTIALS["certificate"] = (directory / "tls.crt").read_bytes()
    CREDENTIALS["token"] = (directory / "admin.token").read_text().strip()
    channel = connect(address)
    grpc.channel_ready_future(channel).result(timeout=30)
    channel.close()
    return server, address


def grpc_floor(address: str, clients: int, seconds: float) -> float:
    """A call that touches no store (ListProviderTemplates) through the same server: what
    gRPC alone costs here, the ceiling for any command."""
    channels = [connect(address) for _ in range(clients)]
    stubs = [trunk_pb2_grpc.TrunkServiceStub(c) for c in channels]
    counts = [0] * clients
    deadline = time.perf_counter() + seconds

    def client(i: int) -> None:
        while time.perf_counter() < deadline:
            stubs[i].ListProviderTemplates(trunk_pb2.ListProviderTemplatesRequest(),
                                           metadata=auth())
            counts[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for channel in channels:
        channel.close()
    return sum(counts) / seconds


def grpc_updates(address: str, clients: int, seconds: float) -> float:
    channels = [connect(address) for _ in range(clients)]
    stubs = [trunk_pb2_grpc.TrunkServiceStub(c) for c in channels]
    for i, stub in enumerate(stubs):
        try:
            stub.CreateTrunk(trunk_pb2.CreateTrunkRequest(
                trunk=trunk_pb2.Trunk(**{**TRUNK, "name": f"bench-{clients}-{i}"})),
                metadata=auth())
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        request = trunk_pb2.UpdateTrunkRequest(trunk=f"bench-{clients}-{i}")
        request.update_mask.paths.append("description")
        start.wait()
        while time.perf_counter() < deadline[0]:
            request.changes.description = f"n{counts[i]}"
            stubs[i].UpdateTrunk(request, metadata=auth())
            counts[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for channel in channels:
        channel.close()
    return sum(counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"store: SQLite file (WAL), AES-GCM cipher, zlib; {args.seconds:.0f}s per run, "
          f"median of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        bare = statistics.median(
            bare_saves(Path(tmp) / f"bare{i}", args.seconds) for i in range(args.repeats))
        server, address = start_server(Path(tmp) / "server")
        try:
            floor = {n: grpc_floor(address, n, args.seconds) for n in (1, 16)}
            one = statistics.median(
                grpc_updates(address, 1, args.seconds) for _ in range(args.repeats))
            many = statistics.median(
                grpc_updates(address, 16, args.seconds) for _ in range(args.repeats))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    print(f"gRPC alone (no store), 1 / 16 clients:      {floor[1]:8.0f} / {floor[16]:.0f} calls/s")
    print(f"bare eventsourcing save, 1 event per save:  {bare:8.0f} commands/s")
    for clients, rate in ((1, one), (16, many)):
        limit = composed(floor[clients], bare)
        print(f"UpdateTrunk over gRPC, {clients:>2} client(s):       {rate:8.0f} commands/s; "
              f"composed limit {limit:.0f}, ratio {rate / limit:.2f} (target 0.8); "
              f"{rate / bare:.2f} of the bare save")


def composed(grpc_alone: float, bare_save: float) -> float:
    """What the two bare parts allow one after the other (issue 16): a call costs the
    gRPC call with no store plus the bare save, 1 / (1/gRPC-alone + 1/bare-save)."""
    return 1 / (1 / grpc_alone + 1 / bare_save)


if __name__ == "__main__":
    main()
