"""What auditors see beyond configuration: passwords exported, calls refused for want of a
role (once a minute per principal and method, so a retry loop does not fill the log),
each with who and which request; unknown event types and partial actors get a hint."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from tests.conftest import Api
from tests.integration.helpers import create_trunk
from tests.integration.test_cli import Server
from tests.integration.test_cli import server as server
from trunkplane.v1 import audit_pb2, audit_pb2_grpc, trunk_pb2


def changes(api: Api, **fields: Any) -> list[audit_pb2.Change]:
    return list(audit_pb2_grpc.AuditServiceStub(api.channel).ListChanges(
        audit_pb2.ListChangesRequest(filter=audit_pb2.ChangeFilter(**fields))).changes)


def test_secret_exports_and_refusals_are_in_the_history(api: Api) -> None:
    create_trunk(api, "voco")
    api.trunks.ExportConfiguration(trunk_pb2.ExportConfigurationRequest(
        with_secrets=True, passphrase="a long passphrase"))
    (exported,) = changes(api, event_type="SecretsExported")
    assert (exported.entry.actor, exported.tenant) == ("tester", "default")
    assert [(c.field, c.new_value) for c in exported.entry.changes] == [("tenants", "default")]
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as refused:
            api.trunks.CreateTrunk(trunk_pb2.CreateTrunkRequest(
                trunk=trunk_pb2.Trunk(name="x")), metadata=api.as_("eve@example.com", "auditor"))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    (denied,) = changes(api, event_type="AccessRefused")
    assert denied.entry.actor == "eve@example.com"
    assert {c.field: c.new_value for c in denied.entry.changes} == {
        "method": "/trunkplane.v1.TrunkService/CreateTrunk", "role": "auditor"}


def test_filters_that_would_find_nothing_say_why(api: Api) -> None:
    create_trunk(api, "voco")
    audit = audit_pb2_grpc.AuditServiceStub(api.channel)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"event_type": "CredentialChanged"}, "did you mean CredentialsChanged"),
        ({"actor": "alice"}, "alice@example.com")]
    for fields, expected in cases:
        with pytest.raises(grpc.RpcError) as caught:
            audit.ListChanges(audit_pb2.ListChangesRequest(
                filter=audit_pb2.ChangeFilter(**fields)))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert expected in str(caught.value.details())
    with pytest.raises(grpc.RpcError) as caught:
        audit.ListChanges(audit_pb2.ListChangesRequest(
            filter=audit_pb2.ChangeFilter(subject="never")))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_tokens_and_key_rotations_at_the_command_line_are_recorded(server: Server) -> None:
    made = server.cli("--json", "tokens", "create", "--principal", "eve@example.com",
                      "--role", "auditor")
    token_id = json.loads(made.stdout)["id"]
    assert server.cli("tokens", "revoke", token_id).returncode == 0
    assert server.cli("keys", "rotate").returncode == 0
    listed = json.loads(server.cli("--json", "audit", "list", "--all-tenants").stdout)["changes"]
    seen = {(c["entry"]["event_type"], c["subject_name"]) for c in listed}
    assert {("TokenCreated", "token_created"), ("TokenRevoked", "token_revoked"),
            ("CipherKeyRotated", "cipher_key_rotated")} <= seen
    created = [c for c in listed if c["entry"]["event_type"] == "TokenCreated"
               and {"field": "principal", "new_value": "eve@example.com"}
               in c["entry"]["changes"]]
    assert created and created[0]["entry"]["actor"].startswith("local:")
    assert server.cli("audit", "verify").returncode == 0
