"""Who may do what: tokens, roles against every RPC (the README's table), revocation,
mutual TLS, and the health check that needs no credentials."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infra.grpc_api.context import CallContextInterceptor
from infra.security.tokens import ROLES, Authenticator, TokenStore, allowed, table
from tests.conftest import Api, settings_for
from tests.integration.helpers import create_trunk
from trunkplane.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    alert_pb2,
    alert_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    ops_pb2,
    ops_pb2_grpc,
    route_pb2,
    trunk_pb2,
)

README = Path(__file__).resolve().parents[2] / "README.md"
SERVICES = {"TrunkService": trunk_pb2, "RouteService": route_pb2, "AuditService": audit_pb2,
            "OpsService": ops_pb2, "AgentService": agent_pb2, "AlertService": alert_pb2}


def rpcs() -> list[tuple[str, str]]:
    return [(service, method.name) for service, module in SERVICES.items()
            for method in module.DESCRIPTOR.services_by_name[service].methods]


def stub(api: Api, service: str) -> Any:
    stubs = {"TrunkService": api.trunks, "RouteService": api.routes,
             "AuditService": audit_pb2_grpc.AuditServiceStub(api.channel),
             "OpsService": ops_pb2_grpc.OpsServiceStub(api.channel),
             "AgentService": agent_pb2_grpc.AgentServiceStub(api.channel),
             "AlertService": alert_pb2_grpc.AlertServiceStub(api.channel)}
    return stubs[service]


def call(api: Api, service: str, name: str, metadata: Any) -> grpc.StatusCode:
    method = SERVICES[service].DESCRIPTOR.services_by_name[service].methods_by_name[name]
    request = getattr(SERVICES[service], method.input_type.name)()
    try:
        answer = getattr(stub(api, service), name)(request, metadata=metadata, timeout=5)
        if method.server_streaming:
            next(iter(answer), None)
            answer.cancel()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_every_rpc_is_in_the_policy_and_the_readme_table_is_the_policy() -> None:
    granted = {f"{s}.{n}" for s, n in rpcs() if any(allowed(r, f"/x.{s}/{n}") for r in ROLES)}
    assert granted == {f"{s}.{n}" for s, n in rpcs()}, "an RPC no role may call"
    text = README.read_text()
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in text.splitlines() if re.match(r"^\| `\w+Service\.\w+` \|", line)]
    assert [[row[0].strip("`"), *row[1:]] for row in rows] == table()


def _same(handler: Any, details: Any) -> Any:
    return handler


def _handler_of_shape(client_streaming: bool, server_streaming: bool) -> Any:
    behaviour = lambda request, context: None  # noqa: E731 - never called here
    make = {(False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler}
    return make[(client_streaming, server_streaming)](behaviour)


def test_every_rpc_and_every_call_shape_passes_through_authentication(tmp_path: Path) -> None:
    """The interceptor wraps each RPC whatever its shape: one it returned untouched would
    answer callers without credentials."""
    interceptor = CallContextInterceptor(Authenticator(TokenStore(tmp_path / "tokens.json")))
    shapes = [(m.client_streaming, m.server_streaming) for module in SERVICES.values()
              for service in module.DESCRIPTOR.services_by_name.values()
              for m in service.methods]
    shapes += [(False, False), (False, True), (True, False), (True, True)]
    for number, (client_streaming, server_streaming) in enumerate(shapes):
        handler = _handler_of_shape(client_streaming, server_streaming)
        details = SimpleNamespace(method=f"/trunkplane.v1.X/M{number}")
        wrapped = interceptor.intercept_service(partial(_same, handler), details)
        assert wrapped is not handler, (client_streaming, server_streaming)
        assert (wrapped.request_streaming, wrapped.response_streaming) == (
            client_streaming, server_streaming)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_can_call_exactly_what_the_policy_grants(api: Api, role: str) -> None:
    create_trunk(api, "voco")
    metadata = api.as_(f"someone-{role}", role)
    for service, name in rpcs():
        code = call(api, service, name, metadata)
        assert code != grpc.StatusCode.UNAUTHENTICATED, (service, name)
        denied = code == grpc.StatusCode.PERMISSION_DENIED
        assert denied != allowed(role, f"/trunkplane.v1.{service}/{name}"), (
            role, service, name, code)


def test_no_or_bad_credentials_are_unauthenticated(api: Api) -> None:
    request = trunk_pb2.ListTrunksRequest()
    for metadata, says in (((("authorization", ""),), "no credentials"),
                           ((("authorization", "Bearer tp_nope_nope"),), "unknown, expired"),
                           ((("authorization", "Basic dXNlcjpwYXNz"),), "no credentials")):
        with pytest.raises(grpc.RpcError) as caught:
            api.trunks.ListTrunks(request, metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert says in (caught.value.details() or "")
    denied = api.as_("viewer", "sre")
    with pytest.raises(grpc.RpcError) as caught:
        create_trunk_as(api, denied)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs the role admin or operator; viewer is sre" in (caught.value.details() or "")
    health: Any = health_pb2_grpc.HealthStub(api.raw_channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == (
        health_pb2.HealthCheckResponse.SERVING)


def create_trunk_as(api: Api, metadata: Any) -> None:
    api.trunks.CreateTrunk(trunk_pb2.CreateTrunkRequest(trunk=trunk_pb2.Trunk(
        name="x", type="peer", peer_addresses=["192.0.2.1"], codecs=["PCMU"])),
        metadata=metadata)


def test_revoked_and_expired_tokens_stop_working_at_once(api: Api) -> None:
    token_id, clear = api.tokens.create("temp", "operator")
    metadata = (("authorization", f"Bearer {clear}"),)
    api.trunks.ListTrunks(trunk_pb2.ListTrunksRequest(), metadata=metadata)
    assert api.tokens.revoke(token_id)
    with pytest.raises(grpc.RpcError) as caught:
        api.trunks.ListTrunks(trunk_pb2.ListTrunksRequest(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stale_id, stale = api.tokens.create("old", "operator", days=1)
    records = api.tokens.records()  # a token that expired yesterday (--days takes 1 or more)
    for record in records:
        if record.id == stale_id:
            record.expires = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    api.tokens._write(records)
    with pytest.raises(grpc.RpcError) as expired:
        api.trunks.ListTrunks(trunk_pb2.ListTrunksRequest(),
                              metadata=(("authorization", f"Bearer {stale}"),))
    assert expired.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_only_admins_export_passwords(api: Api) -> None:
    request = trunk_pb2.ExportConfigurationRequest(with_secrets=True,
                                                   passphrase="a fine passphrase")
    with pytest.raises(grpc.RpcError) as caught:
        api.trunks.ExportConfiguration(request, metadata=api.as_("ops", "operator"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert api.trunks.ExportConfiguration(request).json


def _certificate(name: str, issuer_key: Any, issuer: x509.Name, key: Any) -> x509.Certificate:
    now = datetime.now(UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=name == "test-ca", path_length=None),
                           critical=True)
            .sign(issuer_key, hashes.SHA256()))


@pytest.fixture
def mutual(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Api, Path]]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = _certificate("test-ca", ca_key, ca_name, ca_key)
    (tmp_path / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in ("agent-7", "stranger"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(name, ca_key, ca_name, key)
        (tmp_path / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (tmp_path / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    settings = replace(settings_for("sqlite", tmp_path, request),
                       tls_client_ca=str(tmp_path / "ca.crt"))
    api = Api(settings)
    yield api, tmp_path
    api.close()


def test_a_client_certificate_is_the_principal(mutual: tuple[Api, Path]) -> None:
    api, files = mutual
    api.tokens.create("agent-7", "sre", certificate=True)
    server_cert = (api.settings.data_dir / "tls.crt").read_bytes()

    def connect(name: str) -> Any:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=server_cert, private_key=(files / f"{name}.key").read_bytes(),
            certificate_chain=(files / f"{name}.crt").read_bytes())
        return grpc.secure_channel(f"127.0.0.1:{api.plane.port}", credentials)

    with connect("agent-7") as channel:
        ops: Any = ops_pb2_grpc.OpsServiceStub(channel)
        assert ops.GetProjectionStatus(ops_pb2.GetProjectionStatusRequest()).projections
    with connect("stranger") as channel:
        ops = ops_pb2_grpc.OpsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            ops.GetProjectionStatus(ops_pb2.GetProjectionStatusRequest())
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "certificate stranger is not registered" in (caught.value.details() or "")
