"""Outbound route resolution: the first enabled route, in order, whose dial pattern matches
the number and whose allowed extensions include the caller, gives the candidate trunks."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.dialplan import DialPattern, check_digits, matches
from domain.errors import ForbiddenError, NotFoundError, ValidationError
from domain.model import Fields
from domain.routes import Strategy


@dataclass(frozen=True)
class Candidate:
    trunk_id: str
    trunk_name: str
    weight: int


@dataclass(frozen=True)
class Skipped:
    """A trunk of the route that cannot carry calls whatever its state on the wire."""

    trunk_id: str
    trunk_name: str  # the id, when the trunk is deleted
    outcome: str  # "disabled" or "deleted"

    def __str__(self) -> str:
        return f"{self.trunk_name}: {self.outcome}"


@dataclass(frozen=True)
class Resolution:
    route_id: str
    route_name: str
    strategy: Strategy
    pattern: DialPattern
    number: str
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def resolve_outbound(
    routes: list[tuple[str, Fields]], trunks: dict[str, Fields], number: str, extension: str
) -> Resolution:
    _check_number(number)
    refused: list[str] = []
    for route_id, route in routes:
        if not route["enabled"]:
            continue
        hit = _first_match(route, number)
        if hit is None:
            continue
        pattern, dialled = hit
        allowed = route["allowed_extensions"]
        if allowed and not any(matches(p, extension) for p in allowed):
            refused.append(route["name"])
            continue
        return _candidates(route_id, route, pattern, dialled, trunks)
    if refused:
        raise ForbiddenError(
            f"extension '{extension}' may not use route(s) {', '.join(refused)} for {number}"
        )
    raise NotFoundError(f"no enabled outbound route matches {number}")


def _check_number(number: str) -> None:
    if not number:
        raise ValidationError.single("number", "must not be empty")
    try:
        check_digits(number, "number")
    except ValueError as error:
        raise ValidationError.single("number", str(error)) from None


def _first_match(route: Fields, number: str) -> tuple[DialPattern, str] | None:
    for raw in route["dial_patterns"]:
        pattern = DialPattern(**raw)
        dialled = pattern.rewrite(number)
        if dialled is not None:
            return pattern, dialled
    return None


def _candidates(route_id: str, route: Fields, pattern: DialPattern, dialled: str,
                trunks: dict[str, Fields]) -> Resolution:
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    for item in route["trunks"]:
        trunk_id = item["trunk_id"]
        trunk = trunks.get(trunk_id)
        if trunk is None:
            skipped.append(Skipped(trunk_id, trunk_id, "deleted"))
        elif not trunk["enabled"]:
            skipped.append(Skipped(trunk_id, trunk["name"], "disabled"))
        else:
            candidates.append(Candidate(trunk_id, trunk["name"], item["weight"]))
    return Resolution(route_id, route["name"], Strategy(route["strategy"]), pattern, dialled,
                      candidates, skipped)
