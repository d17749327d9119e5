"""One life cycle for every process (`serve`, `control`, `agent`): parts start in order,
then the gRPC server listens and health says SERVING; a stop says NOT_SERVING, lets calls
in flight finish, then stops the parts in reverse order."""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from infra.config.settings import Settings
from infra.grpc_api.aio import AioServer
from infra.grpc_api.context import AioCallContextInterceptor, CallContextInterceptor, Refusals
from infra.grpc_api.guards import Buckets, Guards, StreamGate
from infra.grpc_api.limits import RateLimiter
from infra.ops.metrics import Metrics
from infra.security.tls import ensure_self_signed
from infra.security.tokens import TOKENS_FILE, Authenticator, TokenStore

log = logging.getLogger("trunkplane")
MAX_SEND = 256 * 1024 * 1024  # exports of large tenants


class Part(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class Closing:
    """A part that only has something to release at the end (a database, the store)."""

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self._close()


class Process:
    """The gRPC server, its health, the metrics endpoint and the parts of one process."""

    def __init__(self, settings: Settings, metrics: Metrics, workers: int = 32,
                 refused: Refusals | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.server = grpc_server(settings, metrics, workers, refused)
        self.health = health.aio.HealthServicer()
        self.services: list[str] = []
        self.parts: list[Part] = []
        self.port = 0
        self.metrics_port = 0

    def serve(self, service: str, add: Callable[[Any], None]) -> None:
        add(self.server)
        self.services.append(service)

    def add(self, part: Part) -> None:
        self.parts.append(part)

    def listen(self) -> int:
        """Binds the gRPC port (not yet serving); raises when it cannot."""
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)  # type: ignore[arg-type]
        if self.settings.reflection:  # off by default: it tells anyone what we serve
            reflection.enable_server_reflection(
                (*self.services, health.SERVICE_NAME, reflection.SERVICE_NAME),
                self.server.server)
        try:
            self.port = listen(self.server, self.settings)
        except RuntimeError:  # grpcio raises where it used to return 0
            self.port = 0
        if self.port == 0:
            self.stop_parts()
            raise OSError(f"cannot listen on {self.settings.listen}: the address is in use or "
                          "not this machine's (TRUNKPLANE_LISTEN)")
        return self.port

    def start(self) -> None:
        if self.settings.metrics_listen != "off":
            self.metrics_port = self.metrics.serve(self.settings.metrics_listen)
        for part in self.parts:
            part.start()
        self.server.start()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 5.0) -> None:
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.stop(grace)
        self.metrics.stop()
        self.stop_parts()

    def stop_parts(self) -> None:
        for part in reversed(self.parts):
            part.stop()

    def _set_health(self, status: Any) -> None:  # a HealthCheckResponse.ServingStatus
        async def set_all() -> None:
            for name in ("", *self.services):
                await self.health.set(name, status)

        self.server.run(set_all())

    def log_listening(self, what: str, detail: str = "") -> None:
        host = self.settings.listen.rsplit(":", 1)[0]
        log.info("%s on %s:%d%s", what, host, self.port, f" ({detail})" if detail else "")
        if self.metrics_port:
            metrics_host = self.settings.metrics_listen.rpartition(":")[0]
            log.info("metrics on http://%s:%d/metrics", metrics_host, self.metrics_port)


def grpc_server(settings: Settings, metrics: Metrics, workers: int,
                refused: Refusals | None = None) -> AioServer:
    """The asyncio server (issue 16): `workers` threads run the unary calls, and the
    streams are coroutines of its one loop, so open streams take no thread from unary
    calls whatever their number. The gate admits at most `max_streams` streams in all and
    `max_streams_per_caller` per principal (RESOURCE_EXHAUSTED beyond)."""
    limiter = RateLimiter(settings.rate_limit, 2 * settings.rate_limit) if (
        settings.rate_limit) else None
    authenticator = Authenticator(TokenStore(settings.data_dir / TOKENS_FILE))
    guards = Guards(
        streams=StreamGate(settings.max_streams_per_caller, settings.max_streams),
        per_address=Buckets(settings.address_rate_limit, 2 * settings.address_rate_limit),
        total=Buckets(settings.total_rate_limit, 2 * settings.total_rate_limit))
    calls = CallContextInterceptor(authenticator, metrics.observe_call, limiter, guards,
                                   refused)
    return AioServer(
        workers, lambda pool: [AioCallContextInterceptor(calls, pool)],
        options=[("grpc.max_receive_message_length", settings.max_message_bytes),
                 ("grpc.max_send_message_length", MAX_SEND)])


def listen(server: AioServer, settings: Settings) -> int:
    if not settings.tls:
        return server.add_insecure_port(settings.listen)
    if settings.tls_cert:
        cert, key = Path(settings.tls_cert), Path(settings.tls_key)
    else:
        cert, key = ensure_self_signed(settings.data_dir)
    client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    credentials = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())], root_certificates=client_ca,
        require_client_auth=client_ca is not None)
    return server.add_secure_port(settings.listen, credentials)


def advertised(settings: Settings, port: int) -> str:
    """Where others reach this process's gRPC: TRUNKPLANE_ADVERTISE, or the listen host
    (the host name when it listens on every address) and the port it got."""
    if settings.advertise:
        return settings.advertise
    host = settings.listen.rsplit(":", 1)[0].strip("[]")
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming, not binding
        host = socket.gethostname()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def wait_for_signal() -> int:
    """Blocks until SIGINT or SIGTERM; returns the signal. The handler only writes a byte to
    a pipe, which is safe however often it runs: it used to set a threading.Event, whose lock
    is not re-entrant, and a second SIGTERM arriving inside the first handler (`make run`
    forwards the signal, so stopping its process group delivers two) deadlocked the stop.
    The handlers stay installed while the process stops, so later signals are harmless."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        with suppress(OSError):  # a full pipe already holds the news
            os.write(write_end, bytes([signum]))

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, on_signal)
    received = os.read(read_end, 1)  # retried by Python after each handler (PEP 475)
    return received[0]
