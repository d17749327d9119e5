"""Thousands of generated bad requests: each gets a clean status (never UNKNOWN or
INTERNAL), the server stays up, and nothing is written."""

from __future__ import annotations

import random
from typing import Any

import grpc
import pytest

from tests.conftest import Api
from tests.integration.helpers import create_route, create_trunk
from trunkplane.v1 import route_pb2, trunk_pb2

CLEAN = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
         grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION,
         grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.ABORTED}
NASTY_TEXT = [
    "", " ", "x" * 70_000, "\x00", "a\x07b", "\u202e\u202d", "\ud7ff\ue000", "😀" * 40,
    "name\nwith\nlines", "'; DROP TABLE stored_events; --", "%s%s%n", "../../etc/passwd",
    "\t", "\u0000\u0001", "Ω" * 65, "a b", "@", "<sip:x>",
]
BAD: dict[str, list[Any]] = {
    "name": ["", "x" * 65, "\x00", "bad\x07", "\u0085" * 3],
    "type": ["sip", "registerx", "peer\x00", "1", "😀"],
    "host": ["bad host", "999.1.2.3", "[::1", "[1.2.3.4]:5060", "h:0", "h:65536", "-a.com",
             "a..b", "x" * 300, "::1:5060", "[::1]x"],
    "transport": ["sctp", "ws", "UDP\x00", "tls1.3"],
    "codecs": [["G722"], ["PCMU", "pcmu"], ["\x00"], ["x" * 1000]],
    "dtmf_mode": ["sipinfo", "2833", "\u200b"],
    "peer_addresses": [["sip.example.com"], ["1.2.3.4", "1.2.3.4:5060"], ["300.1.1.1"],
                       ["[::1"]],
    "max_registrations": [101, 1_000_000],
    "username": ["a b", "x@y", "x" * 200, "\x00"],
    "description": ["x" * 2000, "\x1b[2J"],
}
NAT_BAD: list[dict[str, Any]] = [
    {"external_ip": "1.2.3"}, {"local_networks": ["10.1.1.1/8"]},
    {"local_networks": ["10.0.0.0/33"]}, {"stun_server": "stun:0"}]
LIMITS_BAD = [{"max_concurrent_calls": 10_000}, {"max_concurrent_calls": 5,
                                                 "max_inbound_calls": 6}]
PATTERNS_BAD = ["9Q", ".9", "[5-1]", "[12", "", "X" * 65, "N!X", "😀"]
DESTINATIONS_BAD = ["", "phone:1", "ext:", "ext:" + "9" * 70, "hangup:now", "ivr:a b"]


def valid_trunk(rng: random.Random) -> dict[str, Any]:
    return {"name": f"t{rng.randrange(10**9)}", "type": "register", "host": "sip.example.com",
            "username": "1001", "password": "Long-Enough-Password-1", "codecs": ["PCMU"]}


def bad_trunk(rng: random.Random, template: str = "") -> trunk_pb2.Trunk:
    """A trunk with 1-3 bad fields. With a template, an empty field means "the template's
    value", so only non-empty bad values are drawn."""
    fields = valid_trunk(rng)
    for key in rng.sample(sorted(BAD), rng.randint(1, 3)):
        fields[key] = rng.choice([v for v in BAD[key] if v or not template])
    trunk = trunk_pb2.Trunk(**fields)
    if rng.random() < 0.3:
        trunk.nat.CopyFrom(trunk_pb2.NatSettings(**rng.choice(NAT_BAD)))
        trunk.name = ""  # surely bad even when the NAT case alone might pass
    if rng.random() < 0.3:
        trunk.call_limits.CopyFrom(trunk_pb2.CallLimits(**rng.choice(LIMITS_BAD)))
    return trunk


def calls(rng: random.Random, count: int) -> Any:
    for _ in range(count):
        kind = rng.randrange(7)
        if kind == 0:
            template = rng.choice(["", "", "thevoco", "nope\x00"])
            yield "CreateTrunk", trunk_pb2.CreateTrunkRequest(
                trunk=bad_trunk(rng, template), template=template)
        elif kind == 1:
            request = trunk_pb2.UpdateTrunkRequest(trunk=rng.choice(["voco", "ghost", "\x00"]),
                                                   changes=bad_trunk(rng))
            request.update_mask.paths.extend(rng.sample(
                ["name", "host", "codecs", "nat", "call_limits.max_inbound_calls", "type",
                 "nope", "etag", "nat.x"], rng.randint(1, 3)))
            if "name" not in request.update_mask.paths:
                request.update_mask.paths.append("name")
            request.changes.name = rng.choice(BAD["name"])  # so that every update is bad
            yield "UpdateTrunk", request
        elif kind == 2:
            yield "CreateOutboundRoute", route_pb2.CreateOutboundRouteRequest(
                route=route_pb2.OutboundRoute(
                    name=rng.choice([*NASTY_TEXT[:6], "r"]),
                    dial_patterns=[route_pb2.DialPattern(match=rng.choice(PATTERNS_BAD),
                                                         prefix=rng.choice(["", "9", "9."]))],
                    trunks=[route_pb2.RouteTrunk(trunk_id=rng.choice(["voco", "ghost", ""]),
                                                 weight=rng.choice([0, 1, 5000]))],
                    strategy=rng.choice(["", "fastest", "weighted"]),
                    allowed_extensions=[rng.choice(PATTERNS_BAD)]))
        elif kind == 3:
            yield "CreateInboundRoute", route_pb2.CreateInboundRouteRequest(
                route=route_pb2.InboundRoute(did_pattern=rng.choice([*PATTERNS_BAD, "1555"]),
                                             destination=rng.choice(DESTINATIONS_BAD),
                                             trunk_id=rng.choice(["", "ghost", "voco"])))
        elif kind == 4:
            yield "ResolveOutbound", route_pb2.ResolveOutboundRequest(
                number=rng.choice(NASTY_TEXT), extension=rng.choice(NASTY_TEXT))
        elif kind == 5:
            yield "ListTrunks", trunk_pb2.ListTrunksRequest(
                page_size=rng.choice([-1, 501, 10**6]), page_token=rng.choice(NASTY_TEXT),
                tenant=rng.choice(["", "Bad Tenant", "\x00"]))
        else:
            yield "DeleteTrunk", trunk_pb2.DeleteTrunkRequest(
                trunk=rng.choice([*NASTY_TEXT, "voco"]), etag=rng.choice(['W/"0"', "x"]),
                tenant=rng.choice(["", "default"]))


def call(method: Any, request: Any) -> grpc.StatusCode | None:
    """The status a call ends with, or None when it succeeds."""
    try:
        method(request, timeout=10)
    except grpc.RpcError as error:
        return error.code()
    return None


@pytest.mark.parametrize("seed", [1, 2])
def test_bad_requests_get_clean_errors_and_write_nothing(api: Api, seed: int) -> None:
    create_trunk(api, "voco")
    create_route(api, "US", ["voco"])  # so that deleting voco is refused, not done
    head = api.plane.app.head()
    rng = random.Random(seed)
    stubs = {"CreateTrunk": api.trunks, "UpdateTrunk": api.trunks, "ListTrunks": api.trunks,
             "DeleteTrunk": api.trunks, "CreateOutboundRoute": api.routes,
             "CreateInboundRoute": api.routes, "ResolveOutbound": api.routes}
    seen: dict[str, int] = {}
    for method, request in calls(rng, 1500):
        code = call(getattr(stubs[method], method), request)
        assert code in CLEAN or (code is None and method in ("ResolveOutbound", "ListTrunks")), (
            method, request, code)
        if code is not None:
            seen[code.name] = seen.get(code.name, 0) + 1
    assert api.plane.app.head() == head, "a bad request wrote something"
    assert seen["INVALID_ARGUMENT"] > 500
    assert api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="voco")).name == "voco"
