"""Call admission through gRPC: AcquireChannel + ReleaseChannel pairs per second with 50
concurrent callers, and p50/p99 latency at 1,000 requests per second, against a bare gRPC
echo of the same message sizes in the same run (a server with no interceptor that answers
each request with bytes of the size our answer has).

Both servers are separate processes on loopback, plaintext; ours checks the bearer token
(role pbx) as in production, with TRUNKPLANE_SIP=off (liveness is not the subject here).

    .venv/bin/python bench/admission.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from commands import free_port

from common import machine, server_env
from trunkplane.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    route_pb2,
    route_pb2_grpc,
    trunk_pb2,
    trunk_pb2_grpc,
)

CLIENTS = 50
ECHO = "/bench.Echo/Call"
BARE_SERVER = textwrap.dedent("""
    import sys
    from concurrent import futures
    import grpc

    def handle(request, context):
        return b"x" * int(sys.argv[2]) if request[:1] == b"a" else b"y" * int(sys.argv[3])

    handler = grpc.method_handlers_generic_handler("bench.Echo", {
        "Call": grpc.unary_unary_rpc_method_handler(handle)})
    server = grpc.server(futures.ThreadPoolExecutor(32))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(sys.argv[1])
    server.start()
    server.wait_for_termination()
""")


def serve(directory: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    address = f"127.0.0.1:{free_port()}"
    env = server_env(directory, address, TRUNKPLANE_TLS="off", TRUNKPLANE_SIP="off")
    cli = str(Path(sys.executable).parent / "trunkplane")
    server = subprocess.Popen([cli, "serve"], env=env)
    deadline = time.monotonic() + 30
    while not (directory / "admin.token").exists():
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    token = subprocess.run([cli, "tokens", "create", "--principal", "pbx-bench", "--role",
                            "pbx"], env=env, capture_output=True, text=True,
                           check=True).stdout.strip()
    return server, address, token


def setup(address: str, admin: str) -> None:
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=30)
    metadata = (("authorization", f"Bearer {admin}"),)
    trunks = trunk_pb2_grpc.TrunkServiceStub(channel)
    for name in ("a", "b"):
        trunks.CreateTrunk(trunk_pb2.CreateTrunkRequest(trunk=trunk_pb2.Trunk(
            name=name, type="peer", peer_addresses=["192.0.2.1"], codecs=["PCMU"])),
            metadata=metadata)
    route_pb2_grpc.RouteServiceStub(channel).CreateOutboundRoute(
        route_pb2.CreateOutboundRouteRequest(route=route_pb2.OutboundRoute(
            name="us", dial_patterns=[route_pb2.DialPattern(match="NXXNXXXXXX")],
            trunks=[route_pb2.RouteTrunk(trunk_id="a"), route_pb2.RouteTrunk(trunk_id="b")],
            strategy="spread")), metadata=metadata)
    channel.close()


REQUEST = agent_pb2.AcquireChannelRequest(direction=agent_pb2.OUTBOUND, number="2125551234",
                                          extension="100", call_id="bench-call-0001")


async def ours_pair(stub: Any, metadata: Any) -> None:
    answer = await stub.AcquireChannel(REQUEST, metadata=metadata)
    await stub.ReleaseChannel(agent_pb2.ReleaseChannelRequest(lease_id=answer.lease.lease_id),
                              metadata=metadata)


def bare_pair(call: Any, sizes: tuple[int, int]) -> Callable[[], Awaitable[None]]:
    acquire = b"a" + b"." * (REQUEST.ByteSize() - 1)
    release = b"r" + b"." * 33

    async def pair() -> None:
        await call(acquire)
        await call(release)
    return pair


async def closed_loop(pair: Callable[[], Awaitable[None]], seconds: float) -> float:
    count = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < stop:
            await pair()
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return count / (time.perf_counter() - started)


async def open_loop(request: Callable[[], Awaitable[Any]], rate: float,
                    seconds: float) -> list[float]:
    """Requests at a fixed rate whatever the answers do; latency of each, in ms."""
    latencies: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        await request()
        latencies.append((time.perf_counter() - started) * 1000)

    tasks = []
    begin = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = begin + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one()))
    await asyncio.gather(*tasks)
    return sorted(latencies)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))]


async def measure(ours: str, token: str, bare: str, sizes: tuple[int, int],
                  seconds: float) -> None:
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(ours) as channel, \
            grpc.aio.insecure_channel(bare) as bare_channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        call: Any = bare_channel.unary_unary(ECHO)
        await ours_pair(stub, metadata)
        await call(b"a")
        results: dict[str, list[float]] = {}
        for _ in range(3):  # interleaved, medians
            results.setdefault("bare", []).append(
                await closed_loop(bare_pair(call, sizes), seconds))
            results.setdefault("ours", []).append(
                await closed_loop(lambda: ours_pair(stub, metadata), seconds))
        bare_rate = statistics.median(results["bare"])
        ours_rate = statistics.median(results["ours"])
        print(f"acquire+release pairs/s, {CLIENTS} concurrent callers, median of 3 x "
              f"{seconds:g} s:")
        print(f"  bare gRPC echo, same sizes      {bare_rate:>8,.0f} pairs/s")
        print(f"  AgentService                    {ours_rate:>8,.0f} pairs/s "
              f"({ours_rate / bare_rate:.2f} of the echo; target 0.5)")
        # The limit here is one bare part, the echo (the pair's whole work is the round
        # trip), so the composed limit is the echo's rate; each round's own ratio shows
        # how far the machine moved between rounds.
        rounds = [o / b for o, b in zip(results["ours"], results["bare"], strict=True)]
        print(f"  limit (the bare echo)           {bare_rate:>8,.0f} pairs/s; ratio "
              f"{ours_rate / bare_rate:.2f} (target 0.5); per round "
              f"{' / '.join(f'{r:.2f}' for r in rounds)}")

        async def acquire_release() -> None:
            await ours_pair(stub, metadata)

        async def echo_pair() -> None:
            await bare_pair(call, sizes)()

        # 1,000 requests per second = 500 pairs per second
        bare_lat = await open_loop(echo_pair, 500, seconds)
        ours_lat = await open_loop(acquire_release, 500, seconds)
        print("latency of an acquire+release pair at 1,000 requests/s (open loop):")
        print(f"  bare gRPC echo   p50 {pct(bare_lat, 0.5):.2f} ms, p99 "
              f"{pct(bare_lat, 0.99):.2f} ms")
        print(f"  AgentService     p50 {pct(ours_lat, 0.5):.2f} ms, p99 "
              f"{pct(ours_lat, 0.99):.2f} ms (target p99 < 5 ms per request)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        server, address, token = serve(Path(tmp))
        bare_address = f"127.0.0.1:{free_port()}"
        lease_size = 180  # about the size of our AcquireChannelResponse
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, bare_address,
                                 str(lease_size), "2"],
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        try:
            admin = (Path(tmp) / "admin.token").read_text().strip()
            setup(address, admin)
            time.sleep(0.5)  # the embedded agent applies the events
            asyncio.run(measure(address, token, bare_address, (lease_size, 2), args.seconds))
        finally:
            for process in (server, bare):
                process.terminate()
                process.wait(timeout=15)


if __name__ == "__main__":
    main()
