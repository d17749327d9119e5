"""Limits against abuse: message size, a request rate per principal, and commands whose
caller gave up are not run later."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from tests.conftest import Api, settings_for
from tests.integration.helpers import create_trunk, update_trunk
from trunkplane.v1 import trunk_pb2


@pytest.fixture
def strict(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Api]:
    settings = replace(settings_for("sqlite", tmp_path, request), rate_limit=5,
                       max_message_bytes=64 * 1024)
    api = Api(settings)
    yield api
    api.close()


def test_an_oversized_message_is_refused(strict: Api) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        create_trunk(strict, "voco", description="x" * 100_000)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert strict.plane.app.head() == 0


def test_a_principal_over_its_rate_is_told_when_to_retry(strict: Api) -> None:
    request = trunk_pb2.ListTrunksRequest()
    mallory, alice = strict.as_("mallory", "auditor"), strict.as_("alice", "auditor")
    codes, details = [], set()
    for _ in range(20):
        try:
            strict.trunks.ListTrunks(request, metadata=mallory)
            codes.append("OK")
        except grpc.RpcError as error:
            codes.append(error.code().name)
            details.add((error.details() or "").split("; retry in")[0])
    assert details == {"mallory is over its limit of 5 requests/s"}
    assert codes[:10] == ["OK"] * 10  # a burst of twice the rate
    assert "RESOURCE_EXHAUSTED" in codes[10:]
    strict.trunks.ListTrunks(request, metadata=alice)  # others are not held back
    time.sleep(0.3)
    strict.trunks.ListTrunks(request, metadata=mallory)  # and the bucket refills


def test_a_command_whose_deadline_passed_while_waiting_is_not_run(api: Api) -> None:
    create_trunk(api, "voco")
    writer = api.plane.bus._write_lock
    writer.acquire()  # the store is busy: the command waits its turn
    try:
        with pytest.raises(grpc.RpcError) as caught:
            api.trunks.UpdateTrunk(_update("late.example.com"), timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        writer.release()
    update_trunk(api, "voco", trunk_pb2.Trunk(dtmf_mode="info"), ["dtmf_mode"])
    trunk = api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="voco"))
    assert (trunk.host, trunk.version) == ("sip.example.com", 2)  # the late one never ran


def _update(host: str) -> trunk_pb2.UpdateTrunkRequest:
    request = trunk_pb2.UpdateTrunkRequest(trunk="voco", changes=trunk_pb2.Trunk(host=host))
    request.update_mask.paths.append("host")
    return request
