"""Call admission while 1,000 `WatchTrunkStatus` streams are open (issue 16): the p50/p99
latency of AcquireChannel + ReleaseChannel pairs at 500 pairs/s (open loop) with no watcher,
then with the watchers open and receiving changes, then with no watcher again, in the same
run against the same server; and whether every watcher received every change.

The server is `trunkplane serve` (SQLite, TRUNKPLANE_SIP=off: nothing goes on the wire) in a
process of its own; the watchers are one more process (grpc.aio, 20 principals of 50
streams each, the default cap per principal being 64). The changes: a lease taken and given
back every `--change-every` seconds on a trunk of the watched tenant, each moving its
active calls, so its status changes. Admission runs in the default tenant, whose trunks
nobody watches.

    .venv/bin/python bench/watchers.py [--watchers 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import grpc
from admission import ours_pair, pct, serve, setup

from common import machine
from trunkplane.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    route_pb2,
    route_pb2_grpc,
    trunk_pb2,
    trunk_pb2_grpc,
)

RATE = 500  # acquire+release pairs per second
LOBBY = "lobby"  # the watched tenant
PER_PRINCIPAL = 50
WATCHERS = textwrap.dedent("""
    import asyncio, json, sys
    import grpc
    from trunkplane.v1 import trunk_pb2, trunk_pb2_grpc

    address, tenant, tokens = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    per_principal = int(sys.argv[4])

    async def watch(stub, token, seen, opened):
        call = stub.WatchTrunkStatus(trunk_pb2.WatchTrunkStatusRequest(tenant=tenant),
                                     metadata=(("authorization", "Bearer " + token),))
        try:
            async for change in call:
                if change.current:
                    opened.set_result(None) if not opened.done() else None
                else:
                    seen.add(change.position)
        except grpc.aio.AioRpcError as error:
            if not opened.done():
                opened.set_exception(error)

    async def main():
        channels = [grpc.aio.insecure_channel(address) for _ in range(10)]
        seen = [set() for _ in range(len(tokens) * per_principal)]
        opened = [asyncio.get_running_loop().create_future() for _ in seen]
        tasks = [asyncio.ensure_future(watch(
                    trunk_pb2_grpc.TrunkServiceStub(channels[n % len(channels)]),
                    tokens[n // per_principal], seen[n], opened[n]))
                 for n in range(len(seen))]
        await asyncio.gather(*opened)
        print("open", flush=True)
        expected = set(json.loads(await asyncio.get_running_loop().run_in_executor(
            None, sys.stdin.readline)))
        for _ in range(600):  # every watcher has every change, or 60 s passed
            if all(expected <= s for s in seen):
                break
            await asyncio.sleep(0.1)
        print(json.dumps({"complete": sum(expected <= s for s in seen),
                          "received": sum(len(s & expected) for s in seen)}), flush=True)
        for task in tasks:
            task.cancel()
        for channel in channels:
            await channel.close()

    asyncio.run(main())
""")


def tokens(directory: Path, count: int) -> list[str]:
    env = {**os.environ, "TRUNKPLANE_DATA": str(directory)}
    cli = str(Path(sys.executable).parent / "trunkplane")
    return [subprocess.run([cli, "tokens", "create", "--principal", f"wallboard-{n}",
                            "--role", "auditor"], env=env, capture_output=True, text=True,
                           check=True).stdout.strip() for n in range(count)]


def lobby(address: str, admin: str) -> None:
    """The watched tenant: one trunk and a route to it."""
    metadata = (("authorization", f"Bearer {admin}"),)
    with grpc.insecure_channel(address) as channel:
        trunk_pb2_grpc.TrunkServiceStub(channel).CreateTrunk(trunk_pb2.CreateTrunkRequest(
            tenant=LOBBY, trunk=trunk_pb2.Trunk(name="lobby", type="peer",
                                                peer_addresses=["192.0.2.9"],
                                                codecs=["PCMU"])), metadata=metadata)
        route_pb2_grpc.RouteServiceStub(channel).CreateOutboundRoute(
            route_pb2.CreateOutboundRouteRequest(tenant=LOBBY, route=route_pb2.OutboundRoute(
                name="all", dial_patterns=[route_pb2.DialPattern(match="NXXNXXXXXX")],
                trunks=[route_pb2.RouteTrunk(trunk_id="lobby")])), metadata=metadata)


def head(address: str, token: str) -> int:
    """The status log's newest position, as a watcher opening now is told it."""
    with grpc.insecure_channel(address) as channel:
        stream = trunk_pb2_grpc.TrunkServiceStub(channel).WatchTrunkStatus(
            trunk_pb2.WatchTrunkStatusRequest(tenant=LOBBY),
            metadata=(("authorization", f"Bearer {token}"),), timeout=30)
        position = next(stream).position
        stream.cancel()
        return int(position)


def changes_after(address: str, token: str, position: int) -> list[int]:
    """Every change of the watched tenant after `position`: what each watcher must have."""
    found: list[int] = []
    with grpc.insecure_channel(address) as channel:
        stream = trunk_pb2_grpc.TrunkServiceStub(channel).WatchTrunkStatus(
            trunk_pb2.WatchTrunkStatusRequest(tenant=LOBBY, since_position=position),
            metadata=(("authorization", f"Bearer {token}"),), timeout=5)
        try:
            for change in stream:
                found.append(change.position)
        except grpc.RpcError as error:  # the deadline ends the reading
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
    return found


FAILED: dict[str, int] = {}  # pairs that failed, by phase and code: counted, not timed


async def admission(address: str, token: str, seconds: float,
                    change_every: float, phase: str = "") -> tuple[list[float], int]:
    """Latencies (ms) of pairs at RATE a second, while the lobby's trunk changes."""
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        await ours_pair(stub, metadata)
        stop = time.perf_counter() + seconds
        changes = asyncio.ensure_future(change(stub, metadata, stop, change_every))
        latencies: list[float] = []

        async def one() -> None:
            started = time.perf_counter()
            try:
                await ours_pair(stub, metadata)
            except grpc.aio.AioRpcError as error:
                key = f"{phase} {error.code().name}"
                FAILED[key] = FAILED.get(key, 0) + 1
                return
            latencies.append((time.perf_counter() - started) * 1000)

        tasks = []
        begin = time.perf_counter()
        for n in range(int(RATE * seconds)):
            delay = begin + n / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)
        return sorted(latencies), await changes


async def change(stub: Any, metadata: Any, stop: float, every: float) -> int:
    """A lease on the lobby's trunk, held `every` seconds, then given back: two changes."""
    request = agent_pb2.AcquireChannelRequest(tenant=LOBBY, direction=agent_pb2.OUTBOUND,
                                              number="2125550000", call_id="bench-watch")
    count = 0
    while time.perf_counter() + 2 * every < stop:
        lease = (await stub.AcquireChannel(request, metadata=metadata)).lease
        await asyncio.sleep(every)
        await stub.ReleaseChannel(agent_pb2.ReleaseChannelRequest(lease_id=lease.lease_id),
                                  metadata=metadata)
        await asyncio.sleep(every)
        count += 2
    return count


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (a machine others load cannot bend it
    the way it bends latency)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cores(samples: list[tuple[float, float]], phase: int) -> float:
    """CPU seconds per second of the phase's wall time (samples: (cpu, time) pairs)."""
    (cpu0, t0), (cpu1, t1) = samples[2 * phase], samples[2 * phase + 1]
    return (cpu1 - cpu0) / (t1 - t0)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def report(label: str, latencies: list[float]) -> None:
    print(f"  {label:<34} p50 {pct(latencies, 0.5):6.2f} ms   p99 "
          f"{pct(latencies, 0.99):6.2f} ms   max {latencies[-1]:7.2f} ms "
          f"({len(latencies):,} pairs)")


def main() -> None:
    global RATE
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--change-every", type=float, default=0.5)
    parser.add_argument("--rate", type=int, default=RATE,
                        help="pairs a second (below 500 when the machine is shared, to "
                             "see the watchers' cost apart from a saturated server)")
    args = parser.parse_args()
    RATE = args.rate
    principals = max(1, -(-args.watchers // PER_PRINCIPAL))
    print(machine())
    os.environ["TRUNKPLANE_MAX_STREAMS"] = str(principals * PER_PRINCIPAL + 10)
    with tempfile.TemporaryDirectory() as tmp:
        server, address, token = serve(Path(tmp))
        watchers: subprocess.Popen[str] | None = None
        try:
            admin = (Path(tmp) / "admin.token").read_text().strip()
            setup(address, admin)
            lobby(address, admin)
            time.sleep(0.5)  # the embedded agent applies the events
            wallboards = tokens(Path(tmp), principals)
            idle_rss = rss_mib(server.pid)
            cpu = [(cpu_seconds(server.pid), time.perf_counter())]
            alone, _ = asyncio.run(admission(address, token, args.seconds, args.change_every))
            cpu.append((cpu_seconds(server.pid), time.perf_counter()))
            watchers = subprocess.Popen(
                [sys.executable, "-c", WATCHERS, address, LOBBY, ",".join(wallboards),
                 str(PER_PRINCIPAL)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
            assert watchers.stdout is not None and watchers.stdin is not None
            opened_at = time.perf_counter()
            if watchers.stdout.readline().strip() != "open":
                raise RuntimeError("the watchers did not open")
            opening = time.perf_counter() - opened_at
            start = head(address, admin)
            cpu.append((cpu_seconds(server.pid), time.perf_counter()))
            crowded, made = asyncio.run(admission(address, token, args.seconds,
                                                  args.change_every, "with the watchers"))
            cpu.append((cpu_seconds(server.pid), time.perf_counter()))
            crowded_rss = rss_mib(server.pid)
            expected = changes_after(address, admin, start)
            watchers.stdin.write(json.dumps(expected) + "\n")
            watchers.stdin.flush()
            outcome = json.loads(watchers.stdout.readline())
            watchers.terminate()
            watchers.wait(timeout=15)
            time.sleep(2)  # the server lets the streams go
            cpu.append((cpu_seconds(server.pid), time.perf_counter()))
            after, _ = asyncio.run(admission(address, token, args.seconds,
                                             args.change_every))
            cpu.append((cpu_seconds(server.pid), time.perf_counter()))
        finally:
            for process in (watchers, server):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=15)
    total = principals * PER_PRINCIPAL
    print(f"admission (AcquireChannel + ReleaseChannel) at {RATE} pairs/s, open loop, "
          f"{args.seconds:g} s each:")
    report("no watcher (before)", alone)
    report(f"{total:,} watchers open", crowded)
    report("no watcher (after they closed)", after)
    without = max(pct(alone, 0.99), pct(after, 0.99))
    print(f"  p99 with the watchers: {pct(crowded, 0.99):.2f} ms (target < 5 ms), "
          f"{pct(crowded, 0.99) / without:.2f} x the worse p99 without")
    if FAILED:
        print("  failed pairs: " + ", ".join(f"{n} {k}" for k, n in FAILED.items()))
    print(f"  server CPU, cores: {cores(cpu, 0):.2f} without the watchers, "
          f"{cores(cpu, 1):.2f} with them, {cores(cpu, 2):.2f} after")
    print(f"watchers: {total:,} opened in {opening:.1f} s; {made} lease changes made, "
          f"{len(expected)} status changes logged; {outcome['complete']:,} of {total:,} "
          f"watchers received every one ({outcome['received']:,} of "
          f"{total * len(expected):,} deliveries)")
    print(f"server memory: {idle_rss:.0f} MiB before the watchers, {crowded_rss:.0f} MiB "
          "with them")


if __name__ == "__main__":
    main()
