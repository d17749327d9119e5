"""unbound from Debian as the tests' DNS server: every answer from local data on a loopback
port of its own (A, AAAA, SRV, NAPTR with the TTL each record is written with), changed
while it runs through unbound-control on a unix socket; the root zone is local too, so
no question ever leaves the machine. Every runtime file lives in a temporary folder.

    with DnsServer(tmp_path, "example.test") as dns:
        dns.add("_sip._udp.example.test. 60 IN SRV 10 50 5070 a.example.test.")
        dns.add("a.example.test. 60 IN A 127.0.0.1")
        ... TRUNKPLANE_SIP_RESOLVER=dns.address ...
        dns.replace("_sip._udp.example.test.", [...])  # new records, new TTLs
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import pytest

from tests.brokers import free_port

CONFIG = """server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: {verbosity}
    log-queries: {log_queries}
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    # Everything is local: names outside the zones are NXDOMAIN, never asked upstream.
    local-zone: "." static
{zones}
remote-control:
    control-enable: yes
    control-interface: "{dir}/control.sock"
    control-use-cert: no
"""


class DnsServer:
    def __init__(self, workdir: Path, *zones: str, negative_ttl: int = 5,
                 log_queries: bool = False) -> None:
        """`zones`: the domains the test serves (each with an SOA whose minimum, the
        negative TTL, is `negative_ttl`). `log_queries`: every question in the log, for
        counting them (`questions()`)."""
        if shutil.which("unbound") is None:
            if os.environ.get("TRUNKPLANE_REQUIRE_POSTGRES"):  # `make test`: all servers
                raise RuntimeError("unbound is not installed (make test installs it)")
            pytest.skip("no unbound: apt-get install unbound (make test does: "
                        "infra/scripts/ensure-dns.sh)")
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        lines = []
        for zone in zones:
            name = zone.rstrip(".") + "."
            lines += [f'    local-zone: "{name}" static',
                      f'    local-data: "{name} {negative_ttl} IN SOA ns.{name} '
                      f'hostmaster.{name} 1 3600 600 86400 {negative_ttl}"']
        self.config = workdir / "unbound.conf"
        self.config.write_text(CONFIG.format(
            port=self.port, dir=workdir, zones="\n".join(lines),
            verbosity=1 if log_queries else 0, log_queries="yes" if log_queries else "no"))
        self.log = workdir / "unbound.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def address(self) -> str:
        """What TRUNKPLANE_SIP_RESOLVER takes."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                ["unbound", "-d", "-c", str(self.config)], stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"unbound did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.5):
            return self._control("status", check=False).returncode == 0
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _control(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["unbound-control", "-c", str(self.config), *command],
                              capture_output=True, text=True, timeout=10, check=False)
        if check and (done.returncode != 0 or done.stdout.startswith("error")):
            raise RuntimeError(f"unbound-control {' '.join(command)}: {done.stdout} "
                               f"{done.stderr}")
        return done

    def add(self, *records: str) -> None:
        """Records in zone-file form, TTL included: `name TTL IN TYPE data`."""
        for record in records:
            self._control("local_data", record)

    def remove(self, *names: str) -> None:
        """Every record of these names."""
        for name in names:
            self._control("local_data_remove", name)

    def replace(self, name: str, records: Iterable[str]) -> None:
        """The name's records become these (new data, new TTLs)."""
        self.remove(name)
        self.add(*records)

    def questions(self) -> list[str]:
        """`name TYPE` of every question asked (with log_queries)."""
        found = []
        for line in self.log.read_text().splitlines():
            parts = line.partition(" info: ")[2].split()
            if len(parts) == 4 and parts[3] == "IN" and parts[0].startswith("127."):
                found.append(f"{parts[1].rstrip('.')} {parts[2]}")
        return found

    def __enter__(self) -> DnsServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
