"""Brings N register trunks up against Kamailio from cold and keeps them registered.
Prints the time until all are registered, REGISTER transactions per second, the agent's CPU
and memory, lost and duplicate registrations (from Kamailio's location table), and the
agent's CPU while it holds them. The trunks' host is a name without a port, located as
RFC 3263 says through a real DNS server (unbound on loopback, tests/dns_server.py): NAPTR,
SRV, A. Prints the DNS questions the agent sent and the DNS server received (one per name
and type while the TTL lasts, not one per trunk), and what bare dnspython takes for the
same lookups uncached, as if every trunk asked.

    python bench/registrations.py [trunks] [ip]   (needs kamailio and unbound: make test
                                                  installs them)

`ip`: the trunks' host is Kamailio's address and port instead (no DNS at all), the figure
to compare with on the same machine at the same load."""

from __future__ import annotations

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
from tests.dns_server import DnsServer
from tests.kamailio import Kamailio

PASSWORD = "Bench-Password-1234567"
ZONE = "bench.test"
TTL = 300


class Count:
    def __init__(self) -> None:
        self.registered: set[str] = set()
        self.failed: dict[str, str] = {}
        self.done = threading.Event()
        self.wanted = 0

    def publish(self, observations: Sequence[StatusObservation]) -> None:
        for o in observations:
            if o.state == TrunkState.REGISTERED:
                self.registered.add(o.trunk_id)
                self.failed.pop(o.trunk_id, None)
            elif o.state != TrunkState.REGISTERING:
                self.failed[o.trunk_id] = f"{o.state} {o.sip_code} {o.reason}"
        if len(self.registered) >= self.wanted:
            self.done.set()


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve_zone(dns: DnsServer, port: int) -> None:
    dns.add(f'{ZONE}. {TTL} IN NAPTR 10 50 "s" "SIP+D2U" "" _sip._udp.{ZONE}.',
            f"_sip._udp.{ZONE}. {TTL} IN SRV 10 50 {port} sip1.{ZONE}.",
            f"sip1.{ZONE}. {TTL} IN A 127.0.0.1")


def bare_dnspython(resolver: str, lookups: int) -> float:
    """Seconds bare dnspython (asyncio, no cache) takes per NAPTR+SRV+A chain, measured
    over `lookups` chains: what locating every trunk anew would cost."""
    import asyncio

    import dns.asyncresolver

    async def run() -> float:
        bare = dns.asyncresolver.Resolver(configure=False)
        host, _, port = resolver.partition(":")
        bare.nameservers, bare.nameserver_ports = [host], {host: int(port)}
        started = time.perf_counter()
        for _ in range(lookups):
            await bare.resolve(ZONE, "NAPTR")
            await bare.resolve(f"_sip._udp.{ZONE}", "SRV")
            await bare.resolve(f"sip1.{ZONE}", "A")
        return (time.perf_counter() - started) / lookups

    return asyncio.run(run())


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    direct = sys.argv[2:] == ["ip"]
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        users = {f"u{n}": PASSWORD for n in range(count)}
        kamailio = Kamailio(Path(tmp) / "kamailio", users, children=4, domain=ZONE)
        dns = DnsServer(Path(tmp) / "dns", ZONE, log_queries=True)
        serve_zone(dns, kamailio.udp)
        sink = Count()
        sink.wanted = count
        # `any`: names are resolved (a list of networks resolves none); the zone's only
        # address is loopback, so nothing leaves the machine.
        agent = SipAgent(SipSettings(agent_id="bench", listen_port=0, startup_spread=2.0,
                                     max_in_flight=100, destinations=("any",),
                                     resolver=dns.address), sink)
        agent.start()
        try:
            start, cpu_start = time.perf_counter(), cpu()
            for n in range(count):
                agent.update("bench", f"trunk-{n}", {
                    "type": "register", "host": f"127.0.0.1:{kamailio.udp}" if direct else ZONE,
                    "transport": "udp", "username": f"u{n}", "password": PASSWORD,
                    "enabled": True})
            finished = sink.done.wait(120)
            elapsed = time.perf_counter() - start
            busy = cpu() - cpu_start
            transactions = agent.transport.sent if agent.transport else 0
            retransmitted = agent.transport.retransmissions if agent.transport else 0
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            held_users, contacts = kamailio.location_counts()
            print(f"{count:,} register trunks over UDP, startup spread 2 s, 100 in flight, "
                  + ("host 127.0.0.1:port (no DNS)" if direct else
                     f"host {ZONE} located by NAPTR, SRV, A"))
            print(f"  all registered: {'yes' if finished else 'NO'} in {elapsed:.1f} s "
                  f"(target 10 s); {len(sink.registered):,} registered, "
                  f"{len(sink.failed):,} failing")
            print(f"  {transactions:,} requests sent ({transactions / elapsed:,.0f}/s, "
                  f"{retransmitted:,} retransmissions; two per registration: challenge, "
                  f"answer)")
            print(f"  Kamailio holds {contacts:,} contacts of {held_users:,} users: "
                  f"{count - held_users:,} lost, {contacts - held_users:,} duplicated")
            print(f"  agent CPU {busy:.1f} s over {elapsed:.1f} s "
                  f"({busy / elapsed:.2f} cores); max RSS {rss:.0f} MiB")
            asked = ", ".join(f"{name} {kind} x{n}" for (name, kind), n in
                              sorted(agent.locator.asked.items()))
            print(f"  DNS (RFC 3263, TTL {TTL} s): the agent asked {agent.locator.queries} "
                  f"questions for {count:,} trunks ({asked}); unbound received "
                  f"{len(dns.questions())}")
            per_chain = bare_dnspython(dns.address, 200)
            print(f"  bare dnspython, uncached: {per_chain * 1000:.2f} ms per NAPTR+SRV+A "
                  f"chain; {count:,} trunks each asking would be {3 * count:,} questions, "
                  f"{per_chain * count:.1f} s of lookups")
            hold_start, hold_cpu = time.perf_counter(), cpu()
            time.sleep(10)
            held = kamailio.location_counts()[1]
            holding = (cpu() - hold_cpu) / (time.perf_counter() - hold_start)
            print(f"  holding for 10 s: {holding:.3f} cores, {held:,} contacts still "
                  "registered (target: under one core)")
            for trunk, why in list(sink.failed.items())[:5]:
                print(f"  failing: {trunk}: {why}")
        finally:
            stop_start = time.perf_counter()
            agent.stop(timeout=120)
            left = kamailio.location_counts()[1]
            print(f"  clean shutdown: unREGISTERed in {time.perf_counter() - stop_start:.1f} s,"
                  f" {left:,} contacts left")
            kamailio.stop()
            dns.stop()


if __name__ == "__main__":
    main()
