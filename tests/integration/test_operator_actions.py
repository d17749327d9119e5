"""What auditors see beyond configuration: passwords exported, calls refused for want of a
role (once a minute per principal and method, so a retry loop does not fill the log),
each with who and which request; unknown event types and partial actors get a hint."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from tests.conftest import Api
from tests.integration.helpers import create_trunk
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
