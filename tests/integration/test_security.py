"""Issue 20's review, replayed against a real `trunkplane serve`: each attempt that once
worked must now fail the way the README's security section says."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.integration.helpers import violations
from trunkplane.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    route_pb2,
    route_pb2_grpc,
    trunk_pb2,
    trunk_pb2_grpc,
)

CLI = [str(Path(sys.executable).parent / "trunkplane")]
PASSWORD = "Very-Secret-Password-42"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Serve:
    """`trunkplane serve` as a process, with TLS and tokens as a user gets them."""

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.data = root / "var"
        self.port = free_port()
        self.sip_port = free_port(socket.SOCK_DGRAM)
        self.env = {**os.environ, "TRUNKPLANE_DATA": str(self.data),
                    "TRUNKPLANE_LISTEN": f"127.0.0.1:{self.port}",
                    "TRUNKPLANE_METRICS_LISTEN": "off",
                    "TRUNKPLANE_SIP_LISTEN": f"127.0.0.1:{self.sip_port}", **env}
        for name in ("TRUNKPLANE_CIPHER_KEY", "TRUNKPLANE_DATABASE_URL", "TRUNKPLANE_TOKEN"):
            self.env.pop(name, None)
        self.log = root / "serve.log"
        self.process = subprocess.Popen([*CLI, "serve"], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        deadline = time.monotonic() + 30
        while "serving gRPC on" not in self.log.read_text():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        self.admin = (self.data / "admin.token").read_text().strip()
        self.channel = grpc.secure_channel(
            f"127.0.0.1:{self.port}",
            grpc.ssl_channel_credentials((self.data / "tls.crt").read_bytes()))
        self.trunks = trunk_pb2_grpc.TrunkServiceStub(self.channel)
        self.routes = route_pb2_grpc.RouteServiceStub(self.channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(self.channel)
        self.health: Any = health_pb2_grpc.HealthStub(self.channel)

    def cli(self, *args: str, token: str = "", stdin: str = "") -> subprocess.CompletedProcess[str]:
        env = {**self.env, "TRUNKPLANE_TOKEN": token or self.admin}
        return subprocess.run([*CLI, "--server", f"127.0.0.1:{self.port}", *args], env=env,
                              input=stdin, capture_output=True, text=True, timeout=60,
                              check=False)

    def token(self, principal: str, role: str, *extra: str) -> str:
        created = self.cli("tokens", "create", "--principal", principal, "--role", role, *extra)
        assert created.returncode == 0, created.stderr
        return created.stdout.strip()

    def stop(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    running = Serve(tmp_path_factory.mktemp("serve"))
    yield running
    running.stop()


def create_trunk(serve: Serve, name: str, token: str = "", reason: str = "",
                 tenant: str = "", **fields: Any) -> trunk_pb2.TrunkResponse:
    values: dict[str, Any] = {"name": name, "type": "register", "host": "sip.example.com",
                              "username": "1001", "password": PASSWORD, "codecs": ["PCMU"]}
    request = trunk_pb2.CreateTrunkRequest(
        tenant=tenant, trunk=trunk_pb2.Trunk(**{**values, **fields}),
        options=common_pb2.CommandOptions(reason=reason))
    response: trunk_pb2.TrunkResponse = serve.trunks.CreateTrunk(
        request, metadata=bearer(token or serve.admin), timeout=10)
    return response


def update_trunk(serve: Serve, name: str, token: str, paths: list[str],
                 **fields: Any) -> trunk_pb2.TrunkResponse:
    request = trunk_pb2.UpdateTrunkRequest(trunk=name, changes=trunk_pb2.Trunk(**fields))
    request.update_mask.paths.extend(paths)
    response: trunk_pb2.TrunkResponse = serve.trunks.UpdateTrunk(
        request, metadata=bearer(token), timeout=10)
    return response


def refused(call: Any, code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, (caught.value.details() or "")
    return caught.value


# 1. Streams cannot stall the service; revoked tokens lose their streams.


def test_open_streams_do_not_stall_unary_calls(serve: Serve) -> None:
    """64 unauthenticated streams (health watches) open and 64 reflection attempts held:
    a unary call still answers (32 such streams once stopped the whole service)."""
    watches = [serve.health.Watch(health_pb2.HealthCheckRequest(), timeout=60)
               for _ in range(64)]
    reflection: Any = reflection_pb2_grpc.ServerReflectionStub(serve.channel)
    held = threading.Event()

    def hold() -> Iterator[reflection_pb2.ServerReflectionRequest]:
        held.wait()
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    probes = [reflection.ServerReflectionInfo(hold(), timeout=60) for _ in range(64)]
    try:
        assert [_first_code(w) for w in watches] == [None] * 64  # all 64 open
        templates = serve.trunks.ListProviderTemplates(
            trunk_pb2.ListProviderTemplatesRequest(), metadata=bearer(serve.admin), timeout=10)
        assert templates.templates
        assert serve.health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == (
            health_pb2.HealthCheckResponse.SERVING)
        extra = serve.health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        assert _first_code(extra) == grpc.StatusCode.RESOURCE_EXHAUSTED  # the 65th
    finally:
        held.set()
        for call in [*watches, *probes]:
            call.cancel()


def test_streams_are_capped_per_caller_and_in_total(tmp_path: Path) -> None:
    capped = Serve(tmp_path, TRUNKPLANE_MAX_STREAMS="6", TRUNKPLANE_MAX_STREAMS_PER_CALLER="4")
    streams: list[Any] = []
    try:
        auditor = capped.token("many-watches@example.com", "auditor")
        create_trunk(capped, "watched")  # a watch starts with the current status of each

        def watch(token: str) -> Any:
            call = capped.trunks.WatchTrunkStatus(trunk_pb2.WatchTrunkStatusRequest(),
                                                  metadata=bearer(token), timeout=30)
            streams.append(call)
            return call

        anonymous = [capped.health.Watch(health_pb2.HealthCheckRequest(), timeout=30)
                     for _ in range(5)]
        streams.extend(anonymous)
        codes = [_first_code(s) for s in anonymous]  # which one is refused is a race
        assert codes.count(None) == 4  # four per caller (here: per address)
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 1
        opened = [watch(auditor) for _ in range(3)]
        codes = [_first_code(s) for s in opened]
        assert codes.count(None) == 2  # six open in all: the limit
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 1
        assert capped.trunks.ListTrunks(trunk_pb2.ListTrunksRequest(),
                                        metadata=bearer(capped.admin), timeout=10)
    finally:
        for call in streams:
            call.cancel()
        capped.stop()


def _first_code(call: Any) -> grpc.StatusCode | None:
    """OK while the stream is open and has delivered something, else its final code."""
    try:
        next(call)
        return None
    except grpc.RpcError as error:
        return error.code()


def test_reflection_is_off_unless_turned_on(serve: Serve, tmp_path: Path) -> None:
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(serve.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    on = Serve(tmp_path, TRUNKPLANE_REFLECTION="on")
    try:
        stub = reflection_pb2_grpc.ServerReflectionStub(on.channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.ServerReflectionInfo(iter([request]), timeout=10))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answers = list(stub.ServerReflectionInfo(iter([request]), metadata=bearer(on.admin),
                                                 timeout=10))
        names = {s.name for s in answers[0].list_services_response.service}
        assert "trunkplane.v1.TrunkService" in names
    finally:
        on.stop()


def test_a_revoked_token_loses_its_open_stream(serve: Serve) -> None:
    token = serve.token("watcher@example.com", "auditor")
    stream = serve.trunks.WatchTrunkStatus(trunk_pb2.WatchTrunkStatusRequest(),
                                           metadata=bearer(token), timeout=30)
    ended = threading.Event()
    outcome: list[Any] = []

    def drain() -> None:
        try:
            for _ in stream:
                pass
        except grpc.RpcError as error:
            outcome.append(error.code())
        ended.set()

    threading.Thread(target=drain, daemon=True).start()
    time.sleep(0.5)  # the stream is open and waiting for changes
    assert not ended.is_set()
    token_id = token.split("_")[1]
    assert serve.cli("tokens", "revoke", token_id).returncode == 0
    assert ended.wait(5), "the revoked token's stream is still open"
    assert outcome == [grpc.StatusCode.UNAUTHENTICATED]


# 2. An operator cannot send a trunk's credentials to a server of theirs.


def test_an_operator_cannot_capture_the_digest(serve: Serve) -> None:
    create_trunk(serve, "capture-me")
    operator = serve.token("olivia@example.com", "operator")
    for paths, fields in ((["host"], {"host": "capture.example.net"}),
                          (["host"], {"host": "sip.example.com:5099"}),
                          (["transport"], {"transport": "tcp"}),
                          (["from_domain"], {"from_domain": "capture.example.net"})):
        error = refused(lambda p=paths, f=fields: update_trunk(
            serve, "capture-me", operator, p, **f), grpc.StatusCode.PERMISSION_DENIED)
        assert "needs the role admin, or the password given again" in (error.details() or "")
    update_trunk(serve, "capture-me", operator, ["host", "password"],
                 host="sip2.example.com", password=PASSWORD)
    update_trunk(serve, "capture-me", serve.admin, ["host"], host="sip3.example.com")


# 3. The audit trail cannot be forged on screen.


@pytest.mark.parametrize("reason", [
    "ticket\x1b[2J\x1b[Hall clear", "ok\n2026-11-29 admin  TrunkCreated  forged row",
    "x" * 100_000, "bell\x07",
])
def test_a_reason_that_would_forge_a_row_is_refused(serve: Serve, reason: str) -> None:
    error = refused(lambda: create_trunk(serve, "forged", reason=reason),
                    grpc.StatusCode.INVALID_ARGUMENT)
    assert "options.reason" in violations(error)


def test_text_is_escaped_on_the_terminal_and_neutralised_in_csv(serve: Serve,
                                                                 tmp_path: Path) -> None:
    create_trunk(serve, "=HYPERLINK(\"http://evil\")", reason="=HYPERLINK(\"http://evil\")",
                 description="line one\nfake row\x09tab")
    listed = serve.cli("audit", "list", "--subject", "=HYPERLINK(\"http://evil\")")
    assert listed.returncode == 0, listed.stderr
    assert "\x1b" not in listed.stdout
    exported = tmp_path / "changes.csv"
    done = serve.cli("audit", "export", "--format", "csv", "--output", str(exported))
    assert done.returncode == 0, done.stderr
    text = exported.read_text()
    assert "'=HYPERLINK" in text
    assert ",=HYPERLINK" not in text and '"=HYPERLINK' not in text


def test_a_provider_reason_phrase_is_escaped_in_status_and_doctor(tmp_path: Path) -> None:
    provider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    provider.bind(("127.0.0.1", 0))
    provider.settimeout(20)
    server = Serve(tmp_path, TRUNKPLANE_SIP_DESTINATIONS="127.0.0.0/8",
                   TRUNKPLANE_SIP_STARTUP_SPREAD="0")
    try:
        create_trunk(server, "hostile", host=f"127.0.0.1:{provider.getsockname()[1]}")
        data, source = provider.recvfrom(65536)
        head = data.split(b"\r\n\r\n")[0].split(b"\r\n")
        echoed = b"\r\n".join(h for h in head[1:] if h.split(b":")[0].lower() in (
            b"via", b"from", b"to", b"call-id", b"cseq"))
        provider.sendto(b"SIP/2.0 403 Go\x1b[2J\x1b[H away\x07\r\n" + echoed +
                        b"\r\nContent-Length: 0\r\n\r\n", source)
        deadline = time.monotonic() + 20
        while "forbidden" not in (shown := server.cli("trunk", "status")).stdout:
            assert time.monotonic() < deadline, shown.stdout + shown.stderr
            time.sleep(0.2)
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
        assert "\\x1b[2J" in shown.stdout
        doctor = server.cli("doctor")
        assert "\x1b" not in doctor.stdout and "\x07" not in doctor.stdout
    finally:
        server.stop()
        provider.close()


# 4. Patterns match the whole string.


def test_a_newline_tenant_or_host_is_refused(serve: Serve) -> None:
    error = refused(lambda: create_trunk(serve, "nl", tenant="default\n"),
                    grpc.StatusCode.INVALID_ARGUMENT)
    assert "tenant" in violations(error)
    refused(lambda: serve.trunks.ListTrunks(trunk_pb2.ListTrunksRequest(tenant="default\n"),
                                            metadata=bearer(serve.admin), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT)
    error = refused(lambda: create_trunk(serve, "nl", host="evil\n.example.com"),
                    grpc.StatusCode.INVALID_ARGUMENT)
    assert "trunk.host" in violations(error)


def test_names_that_look_alike_are_one_name(serve: Serve) -> None:
    create_trunk(serve, "caf\u00e9")
    for spelling in ("cafe\u0301", "CAF\u00c9", "\uff43\uff41\uff46\u00e9", "c\u0430f\u00e9"):
        refused(lambda s=spelling: create_trunk(serve, s), grpc.StatusCode.ALREADY_EXISTS)


def test_a_backup_with_two_spellings_of_one_name_is_refused(serve: Serve,
                                                            tmp_path: Path) -> None:
    trunk = {"name": "dup1", "type": "peer", "peer_addresses": ["192.0.2.1"],
             "codecs": ["PCMU"]}
    document = {"format": "trunkplane.config", "version": 1, "tenants": {"default": {
        "trunks": [trunk, {**trunk, "name": "DUP1"}], "outbound_routes": [],
        "inbound_routes": []}}}
    path = tmp_path / "backup.json"
    path.write_text(json.dumps(document))
    done = serve.cli("config", "import", str(path))
    assert done.returncode != 0
    assert "DUP1" in done.stderr and "same name" in done.stderr
    assert "Traceback" not in done.stderr


# 5. Files are the owner's only.


def test_data_directory_and_files_are_private(serve: Serve, tmp_path: Path) -> None:
    create_trunk(serve, "modes")
    outputs = tmp_path / "out"
    outputs.mkdir()
    assert serve.cli("audit", "export", "--output", str(outputs / "a.csv")).returncode == 0
    assert serve.cli("config", "export", "--output", str(outputs / "c.json")).returncode == 0
    replayed = serve.cli("replay", "--position", "1000", "--into", str(outputs / "replay"))
    assert replayed.returncode == 0, replayed.stderr
    assert stat.S_IMODE(serve.data.stat().st_mode) == 0o700
    written = [p for p in (*serve.data.rglob("*"), *outputs.rglob("*")) if p.is_file()]
    assert any(p.name == "views.sqlite" for p in written)
    loose = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in written
             if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert loose == {}
    assert stat.S_IMODE((outputs / "replay").stat().st_mode) == 0o700


# 6. The SIP agent does not amplify.


def _ask(port: int, datagram: bytes, source: str = "127.0.0.1") -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((source, 0))
        probe.settimeout(1.0)
        probe.sendto(datagram, ("127.0.0.1", port))
        try:
            return probe.recvfrom(65536)[0]
        except TimeoutError:
            return None


def test_the_sip_agent_does_not_amplify(serve: Serve) -> None:
    assert _ask(serve.sip_port, b"xxxxxxxxxx\r\n") is None
    assert _ask(serve.sip_port, b"OPTIONS sip:a@b SIP/2.0\r\n\r\n") is None
    headers = (b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK1\r\nFrom: <sip:p@x>;tag=1\r\n"
               b"To: <sip:a@b>\r\nCall-ID: c1\r\n")
    malformed = b"OPTIONS sip:a@b SIP/2.0\r\n" + headers + b"CSeq: 1 INVITE\r\n\r\n"
    answer = _ask(serve.sip_port, malformed)
    assert answer is None or len(answer) <= len(malformed)
    options = b"OPTIONS sip:a@b SIP/2.0\r\n" + headers + b"CSeq: 1 OPTIONS\r\n\r\n"
    answer = _ask(serve.sip_port, options)
    assert answer is None or len(answer) <= len(options)
    polite = options.replace(b"\r\n\r\n", b"\r\nMax-Forwards: 70\r\nUser-Agent: "
                             b"a well-formed probe with the usual headers\r\n"
                             b"Content-Length: 0\r\n\r\n")
    answer = _ask(serve.sip_port, polite)
    assert answer is not None and answer.startswith(b"SIP/2.0 200")
    assert len(answer) <= len(polite)


def test_sip_listens_on_loopback_unless_chosen() -> None:
    from infra.config.settings import Settings

    settings = Settings.from_env({"TRUNKPLANE_DATA": "/nonexistent"})
    assert settings.sip is not None and settings.sip.listen_host == "127.0.0.1"


# 7. Bad input answers INVALID_ARGUMENT or a one-line CLI error, never UNKNOWN.


@pytest.mark.parametrize("token", ["bm90IGpzb24", "WzEsMiwzXQ==", "!!!"])
def test_a_tampered_page_token_is_invalid_argument(serve: Serve, token: str) -> None:
    for call in (
        lambda: serve.trunks.ListTrunks(trunk_pb2.ListTrunksRequest(page_token=token),
                                        metadata=bearer(serve.admin), timeout=10),
        lambda: serve.routes.ListOutboundRoutes(
            route_pb2.ListRoutesRequest(page_token=token),
            metadata=bearer(serve.admin), timeout=10),
        lambda: serve.audit.ListChanges(audit_pb2.ListChangesRequest(page_token=token),
                                        metadata=bearer(serve.admin), timeout=10),
    ):
        error = refused(call, grpc.StatusCode.INVALID_ARGUMENT)
        assert "page_token" in (error.details() or "")
    words = "WyJ4IiwgIiJd"  # ["x", ""]: a trunk list's token, not a route list's offset
    refused(lambda: serve.routes.ListOutboundRoutes(
        route_pb2.ListRoutesRequest(page_token=words), metadata=bearer(serve.admin),
        timeout=10), grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize("document", [
    "[]", '{"format": "trunkplane.config", "version": 1, "tenants": []}',
    '{"format": "trunkplane.config", "version": 1, "tenants": {"default": []}}',
    '{"format": "trunkplane.config", "version": 1, "tenants": {"default": {"trunks": [1]}}}',
    '{"format": "trunkplane.config", "version": 1, "tenants": {"default": {"trunks": '
    '[{"name": "x", "type": "peer", "peer_addresses": "192.0.2.1", "codecs": "PCMU"}]}}}',
    '{"format": "trunkplane.config", "version": 1, "tenants": {"x\\n": {"trunks": []}}}',
])
def test_a_hostile_import_document_is_invalid_argument(serve: Serve, document: str) -> None:
    error = refused(lambda: serve.trunks.ImportConfiguration(
        trunk_pb2.ImportConfigurationRequest(json=document), metadata=bearer(serve.admin),
        timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
    assert "Traceback" not in (error.details() or "")


def test_replay_mistakes_are_one_line_errors(serve: Serve, tmp_path: Path) -> None:
    existing = tmp_path / "a-file"
    existing.write_text("keep me")
    for args in (("--position", "1", "--into", str(existing)),
                 ("--into", str(tmp_path / "r"), "--position", "9" * 40)):
        done = serve.cli("replay", *args)
        assert done.returncode != 0
        assert "Traceback" not in done.stderr and done.stderr.count("\n") <= 1, done.stderr
    assert existing.read_text() == "keep me"


# 8. Repeated fields and stream filters are capped.


def test_repeated_fields_are_capped(serve: Serve) -> None:
    addresses = [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(100_000)]
    error = refused(lambda: create_trunk(serve, "huge", type="peer", host="",
                                         username="", password="", peer_addresses=addresses),
                    grpc.StatusCode.INVALID_ARGUMENT)
    assert "peer_addresses" in (error.details() or "")
    stream = serve.trunks.WatchTrunkStatus(
        trunk_pb2.WatchTrunkStatusRequest(trunks=[f"t{i}" for i in range(50_000)]),
        metadata=bearer(serve.admin), timeout=10)
    error = refused(lambda: next(stream), grpc.StatusCode.INVALID_ARGUMENT)
    assert "trunks" in (error.details() or "")


# 9. Tokens are limited to tenants; calls are limited before and after authentication.


def test_tokens_are_limited_to_their_tenants(serve: Serve) -> None:
    scoped = serve.token("acme-ops@example.com", "operator", "--scope", "acme")
    create_trunk(serve, "acme-trunk", token=scoped, tenant="acme")
    error = refused(lambda: create_trunk(serve, "other", token=scoped, tenant="globex"),
                    grpc.StatusCode.PERMISSION_DENIED)
    assert "acme" in (error.details() or "")
    refused(lambda: serve.trunks.ListTrunks(trunk_pb2.ListTrunksRequest(tenant="default"),
                                            metadata=bearer(scoped), timeout=10),
            grpc.StatusCode.PERMISSION_DENIED)


def test_an_agent_token_records_alerts_only_in_its_tenants(serve: Serve) -> None:
    agent = serve.token("agent:edge-1", "agent", "--scope", "acme")
    alert = route_pb2.RecordFraudAlertRequest(tenant="never-existed", kind="burst",
                                              detail="x", extension="100")
    refused(lambda: serve.routes.RecordFraudAlert(alert, metadata=bearer(agent), timeout=10),
            grpc.StatusCode.PERMISSION_DENIED)
    unscoped = serve.token("agent:edge-2", "agent")
    refused(lambda: serve.routes.RecordFraudAlert(alert, metadata=bearer(unscoped),
                                                  timeout=10),
            grpc.StatusCode.PERMISSION_DENIED)


def test_unauthenticated_calls_are_limited_per_address(serve: Serve) -> None:
    codes: dict[grpc.StatusCode, int] = {}
    for _ in range(400):
        try:
            serve.trunks.ListTrunks(trunk_pb2.ListTrunksRequest(), timeout=10)
        except grpc.RpcError as error:
            codes[error.code()] = codes.get(error.code(), 0) + 1
    assert codes.get(grpc.StatusCode.RESOURCE_EXHAUSTED, 0) > 0, codes
    assert set(codes) <= {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}


# 10. Smaller ones.


@pytest.mark.parametrize("days", ["0", "-1"])
def test_a_token_must_expire_in_the_future(serve: Serve, days: str) -> None:
    done = serve.cli("tokens", "create", "--principal", "x", "--role", "auditor",
                     "--days", days)
    assert done.returncode == 2
    assert "--days" in done.stderr and "Traceback" not in done.stderr


def test_a_line_feed_from_the_wire_does_not_forge_a_log_line(serve: Serve) -> None:
    forged = "2026-11-29 12:00:00,000 INFO trunkplane.rpc [x]: admin logged in"
    datagram = (f"OPTIONS sip:a\n{forged} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9\r\n\r\n")
    _ask(serve.sip_port, datagram.encode(), source="127.0.0.7")  # logged once per source
    deadline = time.monotonic() + 10
    while "malformed SIP message from udp:127.0.0.7" not in serve.log.read_text():
        assert time.monotonic() < deadline, "the agent did not log the malformed message"
        time.sleep(0.1)
    lines = serve.log.read_text().splitlines()
    assert not any(line.startswith(forged) for line in lines)
    assert any("\\n" + forged in line for line in lines)
