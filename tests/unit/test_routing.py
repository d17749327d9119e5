from __future__ import annotations

from typing import Any

import pytest

from domain.errors import ForbiddenError, NotFoundError, ValidationError
from domain.routes import validate_inbound, validate_outbound
from domain.routing import Skipped, resolve_outbound

ROUTE: dict[str, Any] = {
    "name": "US", "dial_patterns": [{"match": "NXXNXXXXXX", "prefix": "9"}],
    "trunks": [{"trunk_id": "a"}, {"trunk_id": "b"}],
}


def errors(raw: dict[str, Any], validate: Any = validate_outbound) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        validate(raw)
    return {v.field: v.description for v in caught.value.violations}


def test_outbound_rules() -> None:
    assert "needs at least one dial pattern" in errors({**ROUTE, "dial_patterns": []})[
        "dial_patterns"]
    assert "needs at least one trunk" in errors({**ROUTE, "trunks": []})["trunks"]
    assert "'fastest' is not one of failover, spread, weighted" in errors(
        {**ROUTE, "strategy": "fastest"})["strategy"]
    assert "weights apply only to the 'weighted' strategy" in errors(
        {**ROUTE, "trunks": [{"trunk_id": "a", "weight": 5}]})["trunks[0].weight"]
    assert "listed twice" in errors({**ROUTE, "trunks": [{"trunk_id": "a"}, {"trunk_id": "a"}]})[
        "trunks[1].trunk_id"]
    assert "is not a digit" in errors({**ROUTE, "allowed_extensions": ["1X?"]})[
        "allowed_extensions[0]"]
    assert "is listed twice" in errors({**ROUTE, "dial_patterns": [
        {"match": "X."}, {"match": "X."}]})["dial_patterns[1]"]


def test_inbound_rules() -> None:
    found = errors({"did_pattern": "555?", "destination": "phone:1"}, validate_inbound)
    assert "is not a digit" in found["did_pattern"]
    assert "is not a destination" in found["destination"]
    ok = validate_inbound({"did_pattern": "_1555XXXXXXX", "destination": "queue:support"})
    assert ok["did_pattern"] == "1555XXXXXXX"


def settings(**changes: Any) -> dict[str, Any]:
    return {**validate_outbound(ROUTE), **changes}


TRUNKS = {"a": {"name": "A", "enabled": True}, "b": {"name": "B", "enabled": False}}


def test_first_matching_route_wins_and_disabled_trunks_are_skipped() -> None:
    intl = settings(name="INTL", dial_patterns=[{"match": "011.", "prefix": "9", "prepend": ""}])
    found = resolve_outbound([("r1", intl), ("r2", settings())], TRUNKS, "92125551234", "1001")
    assert found.route_name == "US"
    assert found.number == "2125551234"
    assert [c.trunk_name for c in found.candidates] == ["A"]
    assert found.skipped == [Skipped("b", "B", "disabled")]


def test_extension_not_allowed_is_forbidden_and_no_match_is_not_found() -> None:
    routes = [("r", settings(allowed_extensions=["1XXX"]))]
    with pytest.raises(ForbiddenError, match="extension '2001' may not use route"):
        resolve_outbound(routes, TRUNKS, "92125551234", "2001")
    with pytest.raises(NotFoundError, match="no enabled outbound route matches 12345"):
        resolve_outbound(routes, TRUNKS, "12345", "1001")
    with pytest.raises(ValidationError, match="number"):
        resolve_outbound(routes, TRUNKS, "12ab", "1001")


def test_disabled_routes_are_passed_over() -> None:
    routes = [("r1", settings(enabled=False)), ("r2", settings(name="US2"))]
    assert resolve_outbound(routes, TRUNKS, "92125551234", "").route_name == "US2"
