"""The console as an ASGI application, and its server: uvicorn on a thread of its own
beside the gRPC server, HTTPS with the service's certificate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from infra.config.settings import DEFAULT_WEB, Settings
from infra.security.tls import ensure_self_signed
from infra.web import history, ops, routes, signin, trunks
from infra.web.api import Api
from infra.web.console import HERE, Console

log = logging.getLogger("trunkplane")
DEFAULT_LISTEN = DEFAULT_WEB
MAX_BODY = 1024 * 1024  # forms only: a configuration import is the CLI's business


@dataclass(frozen=True)
class WebSettings:
    """Where the console listens, the certificate it serves, and the gRPC address and CA
    it calls the service at."""

    listen: str = DEFAULT_LISTEN
    cert: Path | None = None  # None: plain HTTP (behind a proxy that terminates TLS)
    key: Path | None = None
    grpc_target: str = "127.0.0.1:50051"
    grpc_ca: bytes | None = None  # None: the service speaks plaintext gRPC
    grpc_server_name: str = ""  # the certificate's name, when not the target's host


def for_service(settings: Settings, grpc_port: int) -> WebSettings | None:
    """The console of a `serve` or `control` process: its certificate, and its own gRPC
    port on loopback when it listens on every address. None when switched off, or when the
    service demands client certificates, which the console does not hold."""
    if settings.web_listen.strip().lower() == "off":
        return None
    if settings.tls_client_ca:
        log.warning("web console off: the service requires client certificates "
                    "(TRUNKPLANE_TLS_CLIENT_CA) and the console has none")
        return None
    host = settings.listen.rpartition(":")[0].strip("[]")
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 (a name)
    target = f"[{host}]:{grpc_port}" if ":" in host else f"{host}:{grpc_port}"
    if not settings.tls:
        return WebSettings(settings.web_listen, grpc_target=target)
    cert, key = ((Path(settings.tls_cert), Path(settings.tls_key)) if settings.tls_cert
                 else ensure_self_signed(settings.data_dir))
    pem = cert.read_bytes()
    return WebSettings(settings.web_listen, cert, key, target, pem, server_name(pem, host))


def server_name(pem: bytes, host: str) -> str:
    """Empty when the certificate names the host; else a name it has, for the TLS check."""
    certificate = x509.load_pem_x509_certificate(pem)
    try:
        names = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        common = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return str(common[0].value) if common else ""
    dns = names.get_values_for_type(x509.DNSName)
    addresses = {str(a) for a in names.get_values_for_type(x509.IPAddress)}
    if host in dns or host in addresses:
        return ""
    return dns[0] if dns else ""


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
            create_app(Api(settings.grpc_target, settings.grpc_ca, settings.grpc_server_name)),
            host=host.strip("[]"), port=int(port), log_level="warning", access_log=False,
            ssl_certfile=str(settings.cert) if settings.cert else None,
            ssl_keyfile=str(settings.key) if settings.key else None,
            timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.scheme = "https" if settings.cert else "http"
        self._thread = threading.Thread(target=self._run, name="web-console", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self, timeout: float = 15) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the web console cannot listen on {self.address}")
            time.sleep(0.02)
        log.info("web console on %s", self.address)

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
