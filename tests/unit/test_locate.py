"""RFC 3263/2782 choices that need no DNS server: SRV order and weights, the target a
trunk keeps, the resolver setting. (The lookups themselves run against unbound in
tests/integration/test_server_location.py.)"""

from __future__ import annotations

import random

import pytest

from infra.config.settings import SettingsError, sip_settings
from sipagent.sip.locate import Locator, Target, _Srv, ordered, parse_resolver, sticky
from sipagent.sip.transport import Destination


def test_lower_priority_first_and_weights_in_proportion() -> None:
    random.seed(7)
    records = [_Srv(20, 0, 5060, "backup"), _Srv(10, 75, 5060, "big"),
               _Srv(10, 25, 5060, "small")]
    firsts = [ordered(records)[0].target for _ in range(4000)]
    assert all(ordered(records)[-1].target == "backup" for _ in range(50))
    share = firsts.count("big") / len(firsts)
    assert 0.70 < share < 0.80, share  # 75 of 100, within 5 points (4000 draws)


def test_weight_zero_is_picked_when_nothing_else_is_left() -> None:
    records = [_Srv(10, 0, 5060, "zero"), _Srv(10, 10, 5060, "ten")]
    assert [r.target for r in ordered(records)] == ["ten", "zero"]
    assert ordered([_Srv(0, 0, 0, ".")]) == []  # "no service here" (RFC 2782)


def test_a_trunk_keeps_its_target_while_it_stays_among_the_best() -> None:
    a, b, c = (Target(Destination("udp", f"192.0.2.{n}", 5060), p) for n, p in
               ((1, 10), (2, 10), (3, 20)))
    assert sticky([a, b, c], b.destination) == [b, a, c]
    assert sticky([a, b, c], c.destination) == [a, b, c]  # a better priority answers again
    assert sticky([a, b], None) == [a, b]


def test_the_resolver_setting() -> None:
    assert parse_resolver("") == ()
    assert parse_resolver("127.0.0.1:5353, [::1]:53,10.0.0.2") == (
        ("127.0.0.1", 5353), ("::1", 53), ("10.0.0.2", 53))
    with pytest.raises(ValueError, match="not an IP address"):
        parse_resolver("dns.example.com")
    with pytest.raises(SettingsError, match="TRUNKPLANE_SIP_RESOLVER"):
        sip_settings({"TRUNKPLANE_SIP_RESOLVER": "127.0.0.1:99999"})
    settings = sip_settings({"TRUNKPLANE_SIP_RESOLVER": "127.0.0.1:5353"})
    assert settings is not None and settings.resolver == "127.0.0.1:5353"


def test_the_target_is_shown_by_the_cli_and_the_web_console(
        capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from jinja2 import Environment, FileSystemLoader

    import infra.web
    from infra.cli.trunks import status_detail
    from trunkplane.v1 import trunk_pb2

    status = trunk_pb2.TrunkStatus(trunk_name="voco", type="register", state="registered",
                                   target="udp:192.0.2.7:5060 (sip2.voco.net)")
    status_detail(status)
    assert "udp:192.0.2.7:5060 (sip2.voco.net)" in capsys.readouterr().out
    templates = Path(infra.web.__file__).parent / "templates"
    cell = Environment(loader=FileSystemLoader(templates), autoescape=True).get_template(
        "status_cell.html").render(status=status)
    assert "→ udp:192.0.2.7:5060 (sip2.voco.net)" in cell


def test_a_waiter_cancelled_does_not_cancel_the_others_asking_the_same_name() -> None:
    """A trunk stopped (edited, deleted, moved) while its lookup was under way: the other
    trunks waiting on the same shared question still get the answer (once cancelled the
    shared question ended every waiter's registration loop)."""
    import asyncio

    from sipagent.sip.locate import Locator

    async def scenario() -> tuple[object, int]:
        locator = Locator()
        release = asyncio.Event()

        async def slow_answer(name: str, kind: str) -> tuple[list[object], float]:
            locator.queries += 1
            await release.wait()
            return ["answer"], 60.0

        locator._ask = slow_answer  # type: ignore[assignment,method-assign]
        first = asyncio.ensure_future(locator.lookup("sip.example.com", "SRV"))
        second = asyncio.ensure_future(locator.lookup("sip.example.com", "SRV"))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        release.set()
        got = await second
        assert first.cancelled()
        return got, locator.queries

    got, queries = asyncio.run(scenario())
    assert got == ["answer"] and queries == 1


def test_a_host_given_as_an_address_is_parsed_once_and_still_checked() -> None:
    import asyncio

    from sipagent.destinations import Destinations
    from sipagent.sip.transport import TransportError

    locator = Locator(allowed=Destinations.parse("192.0.2.0/24"))
    first = asyncio.run(locator.locate("192.0.2.7:5070", "udp"))
    assert first == [Target(Destination("udp", "192.0.2.7", 5070))]
    first.clear()  # the caller's list, not the cache's
    assert asyncio.run(locator.locate("192.0.2.7:5070", "udp")) == [
        Target(Destination("udp", "192.0.2.7", 5070))]
    assert asyncio.run(locator.locate("192.0.2.7:5070", "tcp")) == [
        Target(Destination("tcp", "192.0.2.7", 5070))]
    for _ in range(2):  # refused every time, never kept
        with pytest.raises(TransportError, match="outside TRUNKPLANE_SIP_DESTINATIONS"):
            asyncio.run(locator.locate("198.51.100.1", "udp"))
    assert locator.queries == 0
