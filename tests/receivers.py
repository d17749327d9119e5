"""Real receivers of notifications on loopback: an HTTPS server that checks each webhook's
signature and records what it got (and can refuse the first attempts, or answer slowly),
and an SMTP server (aiosmtpd) that insists on STARTTLS and authentication."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from infra.security.tls import ensure_self_signed
from tests.brokers import free_port

MAX_SKEW = 300  # seconds a signature's timestamp may be old, as Stripe's default


@dataclass
class Received:
    key: str
    body: dict[str, Any]
    signed: bool
    answered: int


@dataclass
class WebhookReceiver:
    """POSTs to https://127.0.0.1:PORT/hook; `fail_first` attempts answer 503, `down`
    answers every one with 503; `delay` seconds pass between recording and answering."""

    directory: Path
    secret: str
    fail_first: int = 0
    down: bool = False
    delay: float = 0.0
    got: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cert, key = ensure_self_signed(self.directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_port}/hook"
        self._changed = threading.Condition()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> dict[str, Received]:
        """What a receiver keeps: the first accepted delivery per idempotency key."""
        kept: dict[str, Received] = {}
        for item in self.got:
            if item.answered == 200 and item.signed:
                kept.setdefault(item.key, item)
        return kept

    def kinds(self) -> list[str]:
        """The `type` of each notification kept, in the order they arrived."""
        return [item.body["type"] for item in self.delivered().values()]

    def wait(self, test: Any, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not test(self):
                left = deadline - time.monotonic()
                seen = [(g.key, g.body.get("type"), g.answered) for g in self.got]
                assert left > 0, f"webhook receiver got {seen}"
                self._changed.wait(min(left, 0.2))

    def _verify(self, header: str, body: bytes) -> bool:
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        stamp = parts.get("t", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > MAX_SKEW:
            return False
        mac = hmac.new(self.secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        return hmac.compare_digest(mac.hexdigest(), parts.get("v1", ""))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signed = receiver._verify(self.headers.get("Trunkplane-Signature", ""), body)
                with receiver._changed:
                    attempt = len(receiver.got)
                    code = 503 if receiver.down or attempt < receiver.fail_first else (
                        200 if signed else 401)
                    receiver.got.append(Received(self.headers.get("Idempotency-Key", ""),
                                                 json.loads(body), signed, code))
                    receiver._changed.notify_all()
                time.sleep(receiver.delay)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Session,  # noqa: N802 - aiosmtpd's
                          envelope: Envelope) -> str:
        with self.changed:
            content = envelope.content or b""
            raw = content if isinstance(content, bytes) else content.encode()
            self.messages.append(message_from_bytes(raw))
            self.changed.notify_all()
        return "250 OK"


class SmtpReceiver:
    """SMTP on loopback that refuses AUTH before STARTTLS and mail before AUTH."""

    def __init__(self, directory: Path, username: str, password: str) -> None:
        cert, key = ensure_self_signed(directory)
        self.cert = cert
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.inbox = _Inbox()
        self.logins: list[tuple[str, bool]] = []

        def authenticate(server: Any, session: Session, envelope: Envelope, mechanism: str,
                         data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (
                data.login.decode(), data.password.decode()) == (username, password)
            self.logins.append((data.login.decode() if isinstance(data, LoginPassword)
                                else "", ok))
            return AuthResult(success=ok)

        self.port = free_port()
        self.controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, tls_context=context,
            require_starttls=True, auth_require_tls=True, auth_required=True,
            authenticator=authenticate)
        self.controller.start()

    @property
    def messages(self) -> list[Message]:
        return self.inbox.messages

    def wait(self, count: int, timeout: float = 20.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        with self.inbox.changed:
            while len(self.inbox.messages) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.inbox.messages)} messages, wanted {count}"
                self.inbox.changed.wait(min(left, 0.2))
            return list(self.inbox.messages)

    def close(self) -> None:
        self.controller.stop()
