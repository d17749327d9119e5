"""The console's trunk form and sessions, without a browser or a server."""

from __future__ import annotations

import tomllib
from pathlib import Path

from starlette.datastructures import FormData, UploadFile

from infra.web import forms
from infra.web.sessions import Abilities, Sessions


def posted(**values: str | list[str]) -> FormData:
    items: list[tuple[str, str | UploadFile]] = []
    for key, value in values.items():
        name = key.replace("__", ".")
        items += [(name, v) for v in value] if isinstance(value, list) else [(name, value)]
    return FormData(items)


def test_only_the_chosen_types_fields_are_read() -> None:
    form = forms.from_post(posted(type="peer", name="carrier", host="ignored", username="u",
                                  peer_addresses="192.0.2.10\n192.0.2.11:5080",
                                  codecs=["PCMA", "G722", "PCMU"]))
    trunk = forms.to_trunk(form)
    assert trunk.host == "" and trunk.username == ""
    assert list(trunk.peer_addresses) == ["192.0.2.10", "192.0.2.11:5080"]
    assert list(trunk.codecs) == ["PCMA", "PCMU"]  # in the order posted, unknown ones out
    assert "host" not in forms.update_mask(form)


def test_violations_land_next_to_their_inputs_and_the_rest_on_top() -> None:
    form = forms.from_post(posted(type="register", name="x"))
    form.take_violations({"trunk.host": ["bad host"], "trunk.codecs": ["[1] bad"],
                          "trunk.call_limits.max_inbound_calls": ["too many"],
                          "template": ["unknown template"]})
    assert form.errors == {"host": ["bad host"], "codecs": ["[1] bad"],
                           "call_limits.max_inbound_calls": ["too many"],
                           "": ["template: unknown template"]}


def test_a_number_that_is_not_one_is_its_inputs_error() -> None:
    form = forms.from_post(posted(type="register", **{"call_limits.max_concurrent_calls": "ten"}))
    trunk = forms.to_trunk(form)
    assert not trunk.call_limits.HasField("max_concurrent_calls")
    assert form.errors == {"call_limits.max_concurrent_calls": ["'ten' is not a whole number"]}


def test_a_blank_password_keeps_the_stored_one() -> None:
    blank = forms.from_post(posted(type="register", password=""))
    assert "password" not in forms.update_mask(blank)
    given = forms.from_post(posted(type="register", password="Long-Enough-Password"))
    assert "password" in forms.update_mask(given)


def test_the_pages_follow_what_whoami_says_the_role_may_call() -> None:
    auditor = Abilities("audrey", "auditor", frozenset(
        {"TrunkService.ListTrunks", "AuditService.ListChanges"}))
    assert (auditor.read, auditor.audit, auditor.edit, auditor.operate) == (
        True, True, False, False)
    assert not Abilities("pbx-1", "pbx", frozenset({"AgentService.AcquireChannel"})).read


def test_sessions_expire_when_idle_and_ids_are_never_reused() -> None:
    sessions = Sessions(idle_seconds=-1)
    first, session = sessions.new()
    assert sessions.get(first) is None  # idle longer than allowed
    second, _ = Sessions().new()
    assert first != second and session.csrf_matches(session.csrf)
    assert not session.csrf_matches("forged")


def test_the_package_ships_every_template_and_static_file() -> None:
    """The wheel carries what pyproject's package-data names: a new kind of file in
    templates/ or static/ must be named there too, or the installed console lacks it."""
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["infra.web"]
    web = root / "infra" / "web"
    files = [p for d in ("templates", "static") for p in (web / d).iterdir()]
    assert files
    for path in files:
        assert any(path.relative_to(web).match(pattern) for pattern in patterns), path


def test_a_negative_limit_reaches_the_api_which_names_the_rule() -> None:
    form = forms.from_post(posted(type="register", **{"call_limits.max_inbound_calls": "-1"}))
    assert forms.to_trunk(form).call_limits.max_inbound_calls == -1 and not form.errors


def test_timers_and_the_client_certificate_round_trip_through_the_form() -> None:
    form = forms.from_post(posted(type="register", name="voco", **{
        "timers.options_interval": "10", "timers.down_after": "3",
        "timers.ok_codes": "2xx\n404", "client_certificate": "PEM"}))  # qualify unticked
    trunk = forms.to_trunk(form)
    assert (trunk.timers.options_interval, trunk.timers.down_after) == (10, 3)
    assert not trunk.timers.HasField("registration_expiry")  # blank: the agent's
    assert trunk.timers.HasField("qualify") and not trunk.timers.qualify
    assert list(trunk.timers.ok_codes) == ["2xx", "404"]
    mask = forms.update_mask(form)
    assert "client_certificate" in mask and "client_key" not in mask  # blank key: kept
    assert "timers.options_interval" in mask and "timers.qualify" in mask
    removed = forms.from_post(posted(type="register", name="voco", client_certificate=""))
    assert "client_key" in forms.update_mask(removed)  # no certificate: the key goes too
    shown = forms.from_trunk(trunk)
    assert shown.values["timers.options_interval"] == "10"
    assert shown.values["timers.qualify"] is False and shown.values["client_key"] == ""
    assert forms.from_trunk(forms.to_trunk(forms.from_post(posted(type="peer")))).values[
        "timers.qualify"] is True  # peers send no qualify: on


def test_the_status_cell_shows_the_round_trip_of_the_answering_address() -> None:
    from jinja2 import Environment, FileSystemLoader

    from trunkplane.v1 import trunk_pb2

    templates = Environment(loader=FileSystemLoader(
        Path(forms.__file__).parent / "templates"), autoescape=True)
    status = trunk_pb2.TrunkStatus(state="registered", sip_code=200, reason="OK",
                                   registrations_up=1, registrations_wanted=1)
    status.peers.add(address="udp:192.0.2.7:5060", up=True, rtt_ms=12.4)
    html = templates.get_template("status_cell.html").render(status=status)
    assert "12 ms" in html and "round trip of OPTIONS to udp:192.0.2.7:5060" in html
    del status.peers[:]
    assert " ms</span>" not in templates.get_template("status_cell.html").render(
        status=status)
