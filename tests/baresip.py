"""baresip (Debian's baresip-core) as a real phone for the tests: no sound card (a 440 Hz
sine as the microphone, a null player), controlled over its ctrl_tcp module with
netstrings of JSON (see ../shared/INFRA-NOTES.md). Events (CALL_INCOMING, CALL_RINGING,
CALL_ESTABLISHED, CALL_CLOSED, CALL_DTMF_START...) are collected as they arrive."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.brokers import free_port

MODULES = ("g711.so", "ausine.so", "aubridge.so", "account.so")
CONFIG = """poll_method epoll
sip_listen {address}:{port}
module_path /usr/lib/baresip/modules
{modules}
module_app menu.so
module_app ctrl_tcp.so
net_interface 127.0.0.1
ctrl_tcp_listen {address}:{ctrl}
audio_player aubridge,null
audio_alert aubridge,null
audio_source ausine,440
ausrc_srate 48000
ausrc_channels 2
rtp_ports {rtp}-{rtp_end}
sip_trans_def udp
"""


class Baresip:
    def __init__(self, workdir: Path, account: str, name: str = "phone",
                 trace: bool = False) -> None:
        """`account`: one line of baresip's accounts file, e.g.
        `<sip:201@127.0.0.1>;regint=0`; `trace`: SIP messages in the log (-s)."""
        if shutil.which("baresip") is None:
            if os.environ.get("TRUNKPLANE_REQUIRE_POSTGRES"):  # `make test`: all servers
                raise RuntimeError("baresip is not installed (make test installs it)")
            pytest.skip("no baresip: apt-get install baresip-core (make test does)")
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, self.ctrl = _free_pair(), free_port()
        rtp = 20000 + (self.port % 2000) * 10
        (self.dir / "config").write_text(CONFIG.format(
            address="127.0.0.1", port=self.port, ctrl=self.ctrl, rtp=rtp, rtp_end=rtp + 9,
            modules="\n".join(f"module {m}" for m in MODULES)))
        (self.dir / "accounts").write_text(account + "\n")
        (self.dir / "contacts").write_text("")
        self.events: list[dict[str, Any]] = []
        self._answers: dict[str, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._token = 0
        self.log = self.dir / "baresip.log"
        with self.log.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                ["baresip", "-4", *(["-s"] if trace else []), "-f", str(self.dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self._socket = self._connect()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + 10
        while True:
            try:
                return socket.create_connection(("127.0.0.1", self.ctrl), timeout=1)
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"baresip did not start: {self.log.read_text()[-2000:]}"
                                       ) from None
                time.sleep(0.05)

    def _read(self) -> None:
        buffer = b""
        self._socket.settimeout(None)
        while True:
            try:
                chunk = self._socket.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b":" in buffer:
                head, _, rest = buffer.partition(b":")
                if not head.isdigit() or len(rest) < int(head) + 1:
                    break
                size = int(head)
                payload, buffer = rest[:size], rest[size + 1:]
                with contextlib.suppress(ValueError):
                    self._deliver(json.loads(payload))

    def _deliver(self, message: dict[str, Any]) -> None:
        with self._changed:
            if message.get("event"):
                self.events.append(message)
            elif message.get("response"):
                self._answers[str(message.get("token", ""))] = message
            self._changed.notify_all()

    def command(self, command: str, params: str = "", timeout: float = 10.0) -> dict[str, Any]:
        with self._changed:
            self._token += 1
            token = f"t{self._token}"
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._socket.sendall(f"{len(body)}:".encode() + body + b",")
        deadline = time.monotonic() + timeout
        with self._changed:
            while token not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"baresip: no answer to {command}")
                self._changed.wait(left)
            return self._answers.pop(token)

    def wait_event(self, kind: str, timeout: float = 15.0, since: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events[since:]:
                    if event.get("type") == kind:
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [e.get("type") for e in self.events]
                    raise AssertionError(f"baresip {self.dir.name}: no {kind}; saw {seen}; "
                                         f"log: {self.log.read_text()[-1500:]}")
                self._changed.wait(left)

    def seen(self, kind: str) -> list[dict[str, Any]]:
        with self._changed:
            return [e for e in self.events if e.get("type") == kind]

    def dial(self, uri: str) -> dict[str, Any]:
        return self.command("dial", uri)

    def accept(self) -> dict[str, Any]:
        return self.command("accept")

    def hangup(self) -> dict[str, Any]:
        return self.command("hangup")

    def rtp_counts(self) -> tuple[int, int]:
        """(RTP packets sent, received) of the current call's audio, from `audio_debug`
        (`TX: packets=N` and the RTCP member's `rcvd=N`)."""
        text = str(self.command("audio_debug").get("data", ""))
        sent = received = 0
        for match in re.finditer(r"TX: packets=(\d+)", text):
            sent = max(sent, int(match.group(1)))
        for match in re.finditer(r"rcvd=(\d+)", text):
            received = max(received, int(match.group(1)))
        return sent, received

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.close()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def kill(self) -> None:
        """Vanishes without a BYE (SIGKILL): the far end that drops off the network."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> Baresip:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def _free_pair() -> int:
    """A port free on UDP and TCP whose next port is free on TCP too: baresip listens for
    SIP on both and for TLS on the next one."""
    for _ in range(50):
        port = free_port()
        try:
            for kind, number in ((socket.SOCK_DGRAM, port), (socket.SOCK_STREAM, port),
                                 (socket.SOCK_STREAM, port + 1)):
                with socket.socket(socket.AF_INET, kind) as probe:
                    probe.bind(("127.0.0.1", number))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for baresip")
