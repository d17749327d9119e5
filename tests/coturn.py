"""coturn from Debian (`turnserver`) as a STUN server on a loopback port, for the tests:
STUN only (no TURN relays, no TLS, no CLI), its pid file, database and log in a
temporary folder. On loopback it reports the address and port a datagram came from:
127.0.0.1 and the sender's port (a NAT in front of it: tests/natbox.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest

from tests.brokers import free_port

MAGIC_COOKIE = 0x2112A442


class Coturn:
    def __init__(self, workdir: Path, address: str = "127.0.0.1") -> None:
        if shutil.which("turnserver") is None:
            if os.environ.get("TRUNKPLANE_REQUIRE_POSTGRES"):  # `make test`: all servers
                raise RuntimeError("coturn is not installed (make test installs it)")
            pytest.skip("no coturn: apt-get install coturn (make test does)")
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.address = address
        self.port = free_port()
        self.log = workdir / "turnserver.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                ["turnserver", "-n", "--stun-only", "--listening-ip", self.address,
                 "--listening-port", str(self.port), "--no-tls", "--no-dtls", "--no-cli",
                 "--no-rfc5780", "--no-software-attribute", "--simple-log",
                 "--log-file", "stdout", "--pidfile", str(self.dir / "turnserver.pid"),
                 "--db", str(self.dir / "turndb")],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                start_new_session=True)
        deadline = time.monotonic() + 15
        while self.ask(timeout=0.2) is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start: {self.log.read_text()[-3000:]}")

    def ask(self, timeout: float = 1.0) -> tuple[str, int] | None:
        """One Binding request from a socket of its own: the mapping it reports (a
        readiness probe; the agent's own client is sipagent/sip/stun.py)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.settimeout(timeout)
            transaction = os.urandom(12)
            probe.sendto(struct.pack("!HHI12s", 1, 0, MAGIC_COOKIE, transaction),
                         (self.address, self.port))
            try:
                data = probe.recv(2048)
            except OSError:
                return None
        offset = 20
        while offset + 4 <= len(data):
            kind, length = struct.unpack_from("!HH", data, offset)
            if kind == 0x0020:  # XOR-MAPPED-ADDRESS, IPv4
                port = struct.unpack_from("!H", data, offset + 6)[0] ^ (MAGIC_COOKIE >> 16)
                raw = struct.unpack_from("!I", data, offset + 8)[0] ^ MAGIC_COOKIE
                return socket.inet_ntoa(struct.pack("!I", raw)), port
            offset += 4 + length + (-length % 4)
        return None

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.process = None

    def __enter__(self) -> Coturn:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
