"""The console as an ASGI application, and its server: uvicorn on a thread of its own
beside the gRPC server, HTTPS with the service's certificate."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from infra.web import history, ops, routes, signin, trunks
from infra.web.api import Api
from infra.web.console import HERE, Console

DEFAULT_LISTEN = "127.0.0.1:8080"
MAX_BODY = 1024 * 1024  # forms only: a configuration import is the CLI's business


@dataclass(frozen=True)
class WebSettings:
    """Where the console listens (`off`: no console), the certificate it serves, and the
    gRPC address and CA it calls the service at."""

    listen: str = DEFAULT_LISTEN
    cert: Path | None = None  # None: plain HTTP (behind a proxy that terminates TLS)
    key: Path | None = None
    grpc_target: str = "127.0.0.1:50051"
    grpc_ca: bytes | None = None  # None: the service speaks plaintext gRPC

    @property
    def enabled(self) -> bool:
        return self.listen.strip().lower() != "off"


@contextlib.asynccontextmanager
async def _closing(api: Api) -> AsyncIterator[None]:
    yield
    await api.close()


def create_app(api: Api) -> Starlette:
    console = Console(api)

    async def home(request: Request) -> Response:
        return RedirectResponse("/trunks", status_code=303)

    return Starlette(
        routes=[Route("/", home), *signin.routes(console), *trunks.routes(console),
                *history.routes(console), *routes.routes(console), *ops.routes(console),
                Mount("/static", StaticFiles(directory=HERE / "static"), name="static")],
        lifespan=lambda app: _closing(api), max_body_size=MAX_BODY)


class WebConsole:
    """uvicorn serving the console until stop(); port 0 picks a free port."""

    def __init__(self, settings: WebSettings) -> None:
        host, _, port = settings.listen.rpartition(":")
        config = uvicorn.Config(
            create_app(Api(settings.grpc_target, settings.grpc_ca)),
            host=host.strip("[]"), port=int(port), log_level="warning", access_log=False,
            ssl_certfile=str(settings.cert) if settings.cert else None,
            ssl_keyfile=str(settings.key) if settings.key else None,
            timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.scheme = "https" if settings.cert else "http"
        self._thread = threading.Thread(target=self._run, name="web-console", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self, timeout: float = 15) -> WebConsole:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web console did not start on {self.address}")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", [])
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.server.config.port

    @property
    def address(self) -> str:
        return f"{self.scheme}://{self.server.config.host}:{self.port}"

    def stop(self) -> None:
        """Open event streams are cut after the graceful shutdown's 2 s."""
        self.server.should_exit = True
        self._thread.join(timeout=10)
