"""gRPC clients: where a client finds its token and trust, and the connections one
trunkplane process keeps to another."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from infra.config.settings import ControlSettings
from infra.security.tls import CERT_FILE
from infra.security.tokens import ADMIN_TOKEN_FILE
from sipagent.fraud import Alert
from trunkplane.v1 import route_pb2, route_pb2_grpc

log = logging.getLogger("trunkplane")


@dataclass(frozen=True)
class Credentials:
    """Where the CLI's token and trust come from, kept to name them when TLS fails."""

    token: str
    tls: bool
    ca_path: Path
    ca_certificate: bytes | None  # None with TLS on: the system's CAs

    @property
    def trust(self) -> str:
        if self.ca_certificate is not None:
            return f"the CA file {self.ca_path}"
        return f"the system's CAs ({self.ca_path}, the CA file tried, does not exist)"


def connection(env: dict[str, str] | None = None) -> Credentials:
    """The token from TRUNKPLANE_TOKEN / TRUNKPLANE_TOKEN_FILE, the CA from
    TRUNKPLANE_TLS_CA; by default both from the data directory the local service made."""
    env = dict(os.environ if env is None else env)
    data = Path(env.get("TRUNKPLANE_DATA", "./var"))
    token = env.get("TRUNKPLANE_TOKEN", "")
    token_file = Path(env.get("TRUNKPLANE_TOKEN_FILE", data / ADMIN_TOKEN_FILE))
    if not token and token_file.exists():
        token = token_file.read_text().strip()
    ca = Path(env.get("TRUNKPLANE_TLS_CA", data / CERT_FILE))
    tls = env.get("TRUNKPLANE_TLS", "on") != "off"
    return Credentials(token, tls, ca, ca.read_bytes() if tls and ca.exists() else None)


def credentials(env: dict[str, str] | None = None) -> tuple[str, bytes | None]:
    """The token and the CA certificate (None: plaintext, or the system's CAs)."""
    found = connection(env)
    return found.token, found.ca_certificate


def channel_to(address: str, tls: bool, ca: str) -> grpc.Channel:
    if not tls:
        return grpc.insecure_channel(address)
    root = Path(ca).read_bytes() if ca else None
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root))


def alert_recorder(control: ControlSettings | None) -> Callable[[Alert], None]:
    """A distributed agent records fraud alerts through a control plane's RouteService
    (TRUNKPLANE_CONTROL, with a token of role agent), or only logs them."""
    if control is None or not control.address:
        def unrecorded(alert: Alert) -> None:
            log.warning("fraud alert not recorded in the history: set TRUNKPLANE_CONTROL "
                        "and TRUNKPLANE_CONTROL_TOKEN on the agents")
        return unrecorded
    stub = route_pb2_grpc.RouteServiceStub(channel_to(control.address, control.tls,
                                                      control.ca))
    metadata = (("authorization", f"Bearer {control.token}"),) if control.token else ()

    def record(alert: Alert) -> None:
        stub.RecordFraudAlert(route_pb2.RecordFraudAlertRequest(
            tenant=alert.tenant, kind=alert.kind, detail=alert.detail,
            extension=alert.extension, route_id=alert.route_id), metadata=metadata,
            timeout=10)

    return record
