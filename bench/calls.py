"""Complete calls (INVITE, 100, 180, 200, ACK, BYE, 200) through one agent's B2BUA, and
the same load through Kamailio as a plain stateful proxy in the same run (the anchor).

The load generator runs in a process of its own (asyncio, one UDP socket as the PBX, one
as the provider); its own limit is measured too: the same load straight from the PBX
socket to the provider socket. Prints call setups per second (agent, Kamailio, ratio),
the post-dial delay (INVITE to 200) the agent adds at a fixed 200 calls/s (p50, p99, over
the direct path), channels leaked and calls lost, and with a trunk limit below the offered
load the most simultaneous calls sampled at the provider (never above the limit).

    python bench/calls.py [seconds per run]   (needs kamailio: make bench-calls installs it)
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import machine
from domain.calls import CallRecord, PbxAccess
from tests.brokers import free_port
from tests.calls_rig import Rig, wait_for
from tests.kamailio import _modules
from tests.sipua import ScriptedUA

ANCHOR = """#!KAMAILIO
debug=1
log_stderror=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
modparam("tm", "fr_timer", 2000)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("OPTIONS") && !has_totag()) {{ sl_send_reply("200", "OK"); exit; }}
    if (!has_totag()) {{ $du = "sip:127.0.0.1:{provider}"; }}
    t_relay();
}}
"""


# --- the load generator (its own process) -------------------------------------------------


async def _one(pbx: ScriptedUA, target: tuple[str, int], hold: float,
               stats: dict[str, Any]) -> None:
    outcome = await pbx.call(target, "2125551234", wait=4.0)
    if outcome.code == 200:
        stats["pdd"].append(outcome.final_at - outcome.sent_at)
        if hold:
            await asyncio.sleep(hold)
        bye = await pbx.bye(target, outcome, wait=4.0)
        if bye is not None and bye.status == 200:
            stats["completed"] += 1
        else:
            stats["lost"] += 1
    elif outcome.code == 0:
        stats["lost"] += 1
    else:
        stats["refused"] += 1
        stats["codes"][outcome.code] = stats["codes"].get(outcome.code, 0) + 1


async def _closed_loop(pbx: ScriptedUA, target: tuple[str, int], workers: int,
                       seconds: float, hold: float) -> dict[str, Any]:
    stats: dict[str, Any] = {"completed": 0, "lost": 0, "refused": 0, "pdd": [],
                             "codes": {}}
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            await _one(pbx, target, hold, stats)
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    stats["elapsed"] = time.monotonic() - started
    return stats


async def _fixed_rate(pbx: ScriptedUA, target: tuple[str, int], rate: float,
                      seconds: float) -> dict[str, Any]:
    stats: dict[str, Any] = {"completed": 0, "lost": 0, "refused": 0, "pdd": [],
                             "codes": {}}
    tasks = []
    started = time.monotonic()
    for n in range(int(rate * seconds)):
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(_one(pbx, target, 0.0, stats)))
    await asyncio.gather(*tasks)
    stats["elapsed"] = time.monotonic() - started
    return stats


def generator(pipe: Connection) -> None:
    async def main() -> None:
        pbx, provider = ScriptedUA(), ScriptedUA()
        await pbx.start()
        await provider.start()
        pipe.send(provider.port)
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command[0] == "stop":
                return
            kind, target, a, b, c = command
            provider.max_up = provider.calls_up = 0
            cpu = time.process_time()
            if kind == "closed":
                stats = await _closed_loop(pbx, target, a, b, c)
            else:
                stats = await _fixed_rate(pbx, target, a, b)
            stats["cpu"] = time.process_time() - cpu
            stats["max_up"] = provider.max_up
            stats["provider_invites"] = len(provider.received("INVITE"))
            provider.requests.clear()
            pipe.send(stats)
    asyncio.run(main())


# --- the driver ---------------------------------------------------------------------------


class Generator:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=generator, args=(child,), daemon=True)
        self.process.start()
        self.provider_port: int = self.pipe.recv()

    def run(self, kind: str, target: tuple[str, int], a: float, b: float,
            c: float = 0.0) -> dict[str, Any]:
        self.pipe.send((kind, target, a, b, c))
        result: dict[str, Any] = self.pipe.recv()
        return result

    def stop(self) -> None:
        self.pipe.send(("stop",))
        self.process.join(10)


def start_anchor(workdir: Path, provider: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = workdir / "anchor.cfg"
    config.write_text(ANCHOR.format(port=port, modules=_modules(), provider=provider))
    process = subprocess.Popen(
        ["kamailio", "-f", str(config), "-P", str(workdir / "k.pid"), "-Y", str(workdir),
         "-m", "128", "-M", "16", "-DD", "-E"], stdout=(workdir / "k.log").open("ab"),
        stderr=subprocess.STDOUT, start_new_session=True)
    time.sleep(1.0)
    if process.poll() is not None:
        raise RuntimeError((workdir / "k.log").read_text()[-2000:])
    return process, port


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def rate(stats: dict[str, Any]) -> float:
    return float(stats["completed"]) / float(stats["elapsed"])


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    workers = int(os.environ.get("BENCH_CALL_WORKERS", "60"))
    print(machine())
    print(f"(2 cores shared with other engineers' work: figures vary run to run; "
          f"{workers} calls in flight, {seconds:g} s per run)")
    load = Generator()
    rig = Rig(access=PbxAccess("acme", ("127.0.0.0/8",)), probe_interval=30.0,
              provider_timeout=8.0, t1=0.5)
    logging_quiet()
    rig.b2bua.sink = Counted()  # the records leave the agent (a list would grow here)
    trunk = rig.trunk("carrier", peer_addresses=[f"127.0.0.1:{load.provider_port}"])
    rig.wait_live(trunk)
    rig.route("all", [trunk])
    provider = ("127.0.0.1", load.provider_port)
    gc.freeze()  # what the agent's assembly does after start-up: see README (calls)
    with tempfile.TemporaryDirectory() as raw:
        anchor, anchor_port = start_anchor(Path(raw), load.provider_port)
        try:
            # first, on a fresh agent: the delay at a steady 200 calls/s (the transactions
            # of the saturation runs linger 64*T1 and would be walked by the GC here)
            base = load.run("rate", provider, 200, seconds)
            timed = load.run("rate", rig.pbx_address, 200, seconds)
            anchored = load.run("rate", ("127.0.0.1", anchor_port), 200, seconds)
            added50 = percentile(timed["pdd"], 0.5) - percentile(base["pdd"], 0.5)
            added99 = percentile(timed["pdd"], 0.99) - percentile(base["pdd"], 0.99)
            print(f"\npost-dial delay at 200 calls/s, INVITE to 200 (ms): direct p50 "
                  f"{percentile(base['pdd'], 0.5) * 1000:.2f} p99 "
                  f"{percentile(base['pdd'], 0.99) * 1000:.2f}; through the agent p50 "
                  f"{percentile(timed['pdd'], 0.5) * 1000:.2f} p99 "
                  f"{percentile(timed['pdd'], 0.99) * 1000:.2f}")
            print(f"added by the agent: p50 {added50 * 1000:.2f} ms, p99 {added99 * 1000:.2f} "
                  f"ms (target p99 < 10 ms); lost {timed['lost']}")
            k50 = percentile(anchored["pdd"], 0.5) - percentile(base["pdd"], 0.5)
            k99 = percentile(anchored["pdd"], 0.99) - percentile(base["pdd"], 0.99)
            print(f"added by Kamailio (same load, same machine): p50 {k50 * 1000:.2f} ms, "
                  f"p99 {k99 * 1000:.2f} ms")
            direct = load.run("closed", provider, workers, seconds)
            agent_cpu = time.process_time()
            through_agent = load.run("closed", rig.pbx_address, workers, seconds)
            agent_cpu = time.process_time() - agent_cpu
            through_kamailio = load.run("closed", ("127.0.0.1", anchor_port), workers,
                                        seconds)
            print(f"\nsetups/s   direct (generator's own limit) {rate(direct):7.0f}  "
                  f"(generator CPU {direct['cpu'] / direct['elapsed']:.2f} cores)")
            print(f"setups/s   through the agent             {rate(through_agent):7.0f}  "
                  f"(agent CPU {agent_cpu / through_agent['elapsed']:.2f} cores, generator "
                  f"{through_agent['cpu'] / through_agent['elapsed']:.2f})")
            print(f"setups/s   through Kamailio (anchor)     {rate(through_kamailio):7.0f}")
            print(f"ratio agent / Kamailio                    "
                  f"{rate(through_agent) / max(1.0, rate(through_kamailio)):7.2f}  "
                  "(target >= 0.25; agent target >= 500/s)")
            lost = sum(s["lost"] for s in (through_agent, through_kamailio))
            wait_for(lambda: not rig.b2bua.calls, 15, "calls to end")
            print(f"calls lost (agent, Kamailio): {through_agent['lost']}, "
                  f"{through_kamailio['lost']}; refused by the agent: "
                  f"{through_agent['refused']} {through_agent['codes'] or ''}")
            limit_run(rig, load, trunk, seconds)
            wait_for(lambda: not rig.b2bua.calls, 15, "calls to end")
            leaked = rig.admission.leases()
            print(f"\nchannels leaked after the runs: {leaked} (leases), "
                  f"{sum(rig.channels(trunk))} (trunk counts), calls held: "
                  f"{len(rig.b2bua.calls)}; calls lost in all runs: {lost + timed['lost']}")
        finally:
            os.killpg(anchor.pid, signal.SIGTERM)
            anchor.wait(10)
            load.stop()
            rig.close()


def limit_run(rig: Rig, load: Generator, trunk: str, seconds: float) -> None:
    limit = 20
    rig.app.execute  # noqa: B018 - the limit is a trunk update, as a user would make it
    from functools import partial

    from domain import commands
    from tests.calls_rig import META
    rig.app.execute(partial(commands.update_trunk, tenant="acme", ref="carrier", etag="",
                            meta=META, patch={"call_limits": {"max_concurrent_calls": limit}})
                    ).unwrap()
    rig.sync()
    sampled = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            sampled[0] = max(sampled[0], sum(rig.channels(trunk)))
            time.sleep(0.005)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stats = load.run("closed", rig.pbx_address, 50, seconds, 0.05)
    stop.set()
    sampler.join()
    print(f"\ntrunk limit {limit}, 50 calls offered at once (each held 50 ms): "
          f"{stats['completed']} carried, {stats['refused']} refused, {stats['lost']} lost; "
          f"most simultaneous calls: {stats['max_up']} at the provider, {sampled[0]} in the "
          f"agent's counts (never above {limit})")


class Counted:
    def __init__(self) -> None:
        self.records = 0

    def record(self, record: CallRecord) -> None:
        self.records += 1


def logging_quiet() -> None:
    import logging
    logging.getLogger("sipagent").setLevel(logging.ERROR)


if __name__ == "__main__":
    main()
