"""The domain's side of issue 20: whole-string patterns, one spelling per name, free text
that cannot forge a row, credentials that stay where the admin put them, and the SIP
stack's quoting. The same attempts against a real `serve` are in
tests/integration/test_security.py."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pytest

from domain import commands
from domain.application import TrunkplaneApp
from domain.errors import AlreadyExistsError, ForbiddenError, ValidationError
from domain.model import CommandMeta
from domain.sync import DesiredConfig, sync_tenant
from domain.text import csv_cell, escape_control, name_key, one_line
from domain.trunk_settings import validate_trunk
from sipagent.destinations import Destinations
from sipagent.sip.digest import DigestClient, parse_challenge
from sipagent.sip.message import parse, split_list, unquote

OPERATOR = CommandMeta(actor="olivia")
ADMIN = CommandMeta(actor="root", may_move_credentials=True)
VOCO: dict[str, Any] = {"name": "voco", "type": "register", "host": "sip.example.com",
                        "username": "1001", "password": "s3cret-password-xyz",
                        "codecs": ["PCMU"]}



def create(app: TrunkplaneApp, raw: dict[str, Any], tenant: str = "default",
           meta: CommandMeta = ADMIN) -> Any:
    return app.execute(lambda uow: commands.create_trunk(uow, tenant, raw, "", meta)).unwrap()


def update(app: TrunkplaneApp, patch: dict[str, Any], meta: CommandMeta) -> Any:
    return app.execute(lambda uow: commands.update_trunk(
        uow, "default", "voco", patch, "", meta)).unwrap()


@pytest.mark.parametrize(("field", "value"), [
    ("host", "evil\n.example.com"), ("host", "evil.example.com:50\n60"),
    ("from_domain", "example.com\nX: y"), ("host", "sip.example.com:\uff15\uff10\uff16\uff10"),
])
def test_patterns_match_the_whole_string(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_trunk({**VOCO, field: value})
    assert field in {v.field for v in caught.value.violations}


def test_a_tenant_with_a_line_feed_is_not_a_second_tenant(app: TrunkplaneApp) -> None:
    with pytest.raises(ValidationError, match="tenant: 'default\n' is not a tenant id"):
        create(app, VOCO, tenant="default\n")


@pytest.mark.parametrize("spelling", [
    unicodedata.normalize("NFD", "vocé"), "VOCÉ", "ｖｏｃé", "v\u043ecé", "v\u03bfcé",
])
def test_names_that_look_the_same_are_the_same_name(app: TrunkplaneApp, spelling: str) -> None:
    create(app, {**VOCO, "name": "vocé"})
    with pytest.raises(AlreadyExistsError):
        create(app, {**VOCO, "name": spelling})


def test_names_are_stored_in_one_spelling() -> None:
    settings, _ = validate_trunk({**VOCO, "name": unicodedata.normalize("NFD", "café")})
    assert settings["name"] == unicodedata.normalize("NFC", "café")
    assert name_key("Café") == name_key(unicodedata.normalize("NFD", "café")) != name_key("cafe")


@pytest.mark.parametrize(("reason", "message"), [
    ("ok\x1b[2J", "control character '\\x1b'"), ("line\nforged row", "control character"),
    ("x" * 501, "at most 500 characters"), ("bidi \u202e", "control character"),
])
def test_the_reason_is_one_printable_line(app: TrunkplaneApp, reason: str,
                                          message: str) -> None:
    with pytest.raises(ValidationError, match=f"options.reason: .*{re.escape(message)}"):
        create(app, VOCO, meta=CommandMeta(actor="root", reason=reason))


def test_moving_credentials_needs_an_admin_or_the_password(app: TrunkplaneApp) -> None:
    create(app, VOCO)
    for patch in ({"host": "capture.example.net"}, {"host": "sip.example.com:5099"},
                  {"transport": "tcp"}, {"from_domain": "capture.example.net"}):
        with pytest.raises(ForbiddenError, match="needs the role admin, or the password"):
            update(app, patch, OPERATOR)
    update(app, {"codecs": ["PCMA"], "description": "no credentials move"}, OPERATOR)
    update(app, {"host": "sip2.example.com", "password": "s3cret-password-xyz"}, OPERATOR)
    update(app, {"host": "sip3.example.com"}, ADMIN)


def test_a_peer_trunk_has_no_credentials_to_move(app: TrunkplaneApp) -> None:
    create(app, {"name": "voco", "type": "peer", "peer_addresses": ["192.0.2.1"],
                 "codecs": ["PCMU"]})
    update(app, {"peer_addresses": ["192.0.2.2"], "host": "192.0.2.2"}, OPERATOR)


def test_a_backup_with_two_spellings_of_one_name_is_refused(app: TrunkplaneApp) -> None:
    desired = DesiredConfig(trunks=[{**VOCO, "name": "dup1"}, {**VOCO, "name": "DUP1"}])
    with pytest.raises(ValidationError, match=r"trunks\[1\].name: 'DUP1' is the same name as "
                                              r"trunks\[0\] 'dup1'"):
        app.execute(lambda uow: sync_tenant(uow, "default", desired, ADMIN)).unwrap()
    assert app.catalog("default") is None  # nothing was created


def test_text_shown_on_a_terminal_in_a_log_or_a_spreadsheet() -> None:
    assert escape_control("ok\x1b[31m\x07\nrow") == "ok\\x1b[31m\\x07\\nrow"
    assert escape_control("a\\x1b") == "a\\\\x1b"  # a typed escape stays distinguishable
    assert one_line("forged\n2026-01-01 INFO admin logged in") == (
        "forged\\n2026-01-01 INFO admin logged in")
    assert one_line("plain text") == "plain text"
    for formula in ("=HYPERLINK(\"http://x\")", "+1", "-1+2", "@SUM(A1)"):
        assert csv_cell(formula) == "'" + formula
    assert csv_cell("ticket 7") == "ticket 7"


def test_an_auth_id_ending_in_a_backslash_cannot_escape_its_quotes() -> None:
    challenge = parse_challenge('Digest realm="r\\"1", nonce="n", qop="auth"')
    assert challenge.realm == 'r"1'
    header = DigestClient("evil\\", "pw").answer(challenge, "REGISTER", "sip:x", cnonce="c")
    params = dict(p.split("=", 1) for p in split_list(header.removeprefix("Digest ")))
    assert unquote(params["username"]) == "evil\\"
    assert unquote(params["realm"]) == 'r"1'
    assert set(params) == {"username", "realm", "nonce", "uri", "response", "algorithm",
                           "cnonce", "qop", "nc"}


def test_a_uri_user_takes_no_backslash() -> None:
    with pytest.raises(ValidationError, match="username"):
        validate_trunk({**VOCO, "username": "a\\"})
    validate_trunk({**VOCO, "auth_id": "domain\\user"})


def test_control_characters_in_a_reason_phrase_are_escaped() -> None:
    response = parse(b"SIP/2.0 403 Go\x1b[2J away\x07\r\nContent-Length: 0\r\n\r\n")
    assert response.reason == "Go\\x1b[2J away\\x07"  # type: ignore[union-attr]


def test_destinations_are_public_until_the_operator_chooses() -> None:
    public = Destinations.parse("")
    assert public.allows("8.8.8.8") and public.resolves_names
    for inside in ("127.0.0.1", "10.1.2.3", "192.168.1.1", "169.254.169.254", "::1",
                   "fd00::1", "100.64.0.1", "0.0.0.0"):  # noqa: S104
        assert not public.allows(inside), inside
    assert Destinations.parse("any").allows("10.1.2.3")
    chosen = Destinations.parse("10.0.0.0/8, ::1/128")
    assert chosen.allows("10.9.9.9") and not chosen.allows("8.8.8.8")
    assert not chosen.resolves_names
    with pytest.raises(ValueError, match="'public' is not a CIDR"):
        Destinations.parse("public,10.0.0.0/8")


def test_repeated_fields_are_capped() -> None:
    from domain.routes import validate_outbound

    peers = [f"10.0.{i // 256}.{i % 256}" for i in range(33)]
    with pytest.raises(ValidationError, match="peer_addresses: at most 32 items"):
        validate_trunk({"name": "p", "type": "peer", "peer_addresses": peers,
                        "codecs": ["PCMU"]})
    with pytest.raises(ValidationError, match=r"nat\.local_networks: at most 32 items"):
        validate_trunk({**VOCO, "nat": {"local_networks": ["10.0.0.0/8"] * 33}})
    route = {"name": "r", "dial_patterns": [{"match": "NXXNXXXXXX"}] * 101,
             "trunks": [{"trunk_id": f"t{i}"} for i in range(33)],
             "allowed_extensions": ["1XXX"] * 101}
    with pytest.raises(ValidationError) as caught:
        validate_outbound(route)
    found = {v.field: v.description for v in caught.value.violations}
    assert found["dial_patterns"] == "at most 100 items (got 101)"
    assert found["trunks"] == "at most 32 items (got 33)"
    assert found["allowed_extensions"] == "at most 100 items (got 101)"


@pytest.mark.parametrize(("changes", "field"), [
    ({"nat": ["10.0.0.0/8"]}, "nat"), ({"call_limits": 5}, "call_limits"),
    ({"codecs": "PCMU"}, "codecs"), ({"name": 7}, "name"),
])
def test_a_value_of_the_wrong_shape_is_a_violation_not_a_crash(changes: dict[str, Any],
                                                                field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_trunk({**VOCO, **changes})
    assert field in {v.field for v in caught.value.violations}


def test_a_route_of_the_wrong_shape_is_a_violation_not_a_crash() -> None:
    from domain.routes import validate_outbound

    with pytest.raises(ValidationError) as caught:
        validate_outbound({"name": "r", "dial_patterns": ["NXXNXXXXXX"], "trunks": ["voco"]})
    found = {v.field for v in caught.value.violations}
    assert {"dial_patterns[0]", "trunks[0]"} <= found
