"""What qualify (OPTIONS to each register trunk's registrar) costs the agent. N register
trunks against Kamailio, each with its own OPTIONS interval; the agent's CPU while it holds
them with qualify on, against the same trunks with qualify off, and against the bare
SipTransport sending the same OPTIONS in the same run. Prints the CPU per OPTIONS and what
the default (every trunk every 30 s) would take for 20,000 trunks.

    python bench/qualify.py [trunks] [interval seconds]   (needs kamailio)"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import machine
from domain.status import StatusObservation, TrunkState
from sipagent.engine import SipAgent
from sipagent.settings import SipSettings
from sipagent.sip.message import Request
from sipagent.sip.transport import Destination, SipTransport, new_tag
from tests.kamailio import Kamailio

PASSWORD = "Bench-Password-1234567"
HOLD = 10.0


class Count:
    def __init__(self, wanted: int) -> None:
        self.registered: set[str] = set()
        self.wanted = wanted
        self.done = threading.Event()

    def publish(self, observations: Sequence[StatusObservation]) -> None:
        for o in observations:
            if o.state == TrunkState.REGISTERED:
                self.registered.add(o.trunk_id)
            else:
                self.registered.discard(o.trunk_id)
        if len(self.registered) >= self.wanted:
            self.done.set()


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def hold(kamailio: Kamailio, count: int, interval: int, qualify: bool) -> tuple[float, int]:
    """Registers the trunks, waits two intervals (qualify's first OPTIONS come within
    them), then measures HOLD seconds: (cores used, OPTIONS sent)."""
    sink = Count(count)
    agent = SipAgent(SipSettings(agent_id="bench", listen_port=0, startup_spread=1.0,
                                 destinations=("127.0.0.0/8",)), sink)
    agent.start()
    try:
        for n in range(count):
            agent.update("bench", f"trunk-{n}", {
                "type": "register", "host": f"127.0.0.1:{kamailio.udp}", "transport": "udp",
                "username": f"u{n}", "password": PASSWORD, "enabled": True,
                "timers": {"options_interval": interval, "qualify": qualify}})
        if not sink.done.wait(120):
            raise SystemExit(f"only {len(sink.registered)} of {count} registered")
        time.sleep(2 * interval)
        sent, started, used = agent.counters.options_sent, time.perf_counter(), cpu()
        time.sleep(HOLD)
        cores = (cpu() - used) / (time.perf_counter() - started)
        return cores, agent.counters.options_sent - sent
    finally:
        agent.stop(timeout=120)


def bare(kamailio: Kamailio, total: int, per_second: float) -> float:
    """CPU seconds the bare SipTransport takes for `total` OPTIONS at `per_second`."""

    async def run() -> float:
        transport = SipTransport("127.0.0.1", 0, t1=0.5)
        await transport.start()
        destination = Destination("udp", "127.0.0.1", kamailio.udp)
        host, port = transport.local_address(destination)
        used = cpu()
        tasks = []
        for _ in range(total):
            request = Request(method="OPTIONS", uri=f"sip:127.0.0.1:{kamailio.udp}", headers=[
                ("Max-Forwards", "70"), ("From", f"<sip:b@{host}:{port}>;tag={new_tag()}"),
                ("To", f"<sip:127.0.0.1:{kamailio.udp}>"),
                ("Call-ID", f"{new_tag()}@bench"), ("CSeq", "1 OPTIONS")])
            tasks.append(asyncio.ensure_future(transport.request(request, destination, 3.0)))
            await asyncio.sleep(1 / per_second)
        await asyncio.gather(*tasks, return_exceptions=True)
        spent = cpu() - used
        transport.close()
        return spent

    return asyncio.run(run())


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    interval = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        users = {f"u{n}": PASSWORD for n in range(count)}
        with Kamailio(Path(tmp) / "kamailio", users, children=4) as kamailio:
            off, _ = hold(kamailio, count, interval, qualify=False)
            on, sent = hold(kamailio, count, interval, qualify=True)
            rate = sent / HOLD
            bare_cpu = bare(kamailio, sent, rate)
    extra = max(0.0, on - off) * HOLD  # CPU seconds qualify added over HOLD
    per = extra / sent if sent else 0.0
    default_rate = 20_000 / 30
    print(f"{count:,} register trunks over UDP, OPTIONS every {interval} s each "
          f"(expected {count / interval:,.0f}/s), {HOLD:.0f} s held")
    print(f"  qualify off: {off:.3f} cores; qualify on: {on:.3f} cores, {sent:,} OPTIONS "
          f"({rate:,.0f}/s)")
    print(f"  qualify costs {per * 1e6:,.0f} us of agent CPU per OPTIONS; the bare "
          f"SipTransport {bare_cpu / sent * 1e6 if sent else 0:,.0f} us for the same "
          "OPTIONS")
    print(f"  20,000 trunks at the default 30 s: {default_rate:,.0f} OPTIONS/s, about "
          f"{per * default_rate:.2f} cores of the agent")


if __name__ == "__main__":
    main()
