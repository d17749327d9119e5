"""`trunkplane pbx` and `trunkplane calls` against `trunkplane serve` as a real process."""

from __future__ import annotations

import json
from pathlib import Path

from infra.cli.exits import Exit
from projections.calls import CallStore
from projections.db import SqliteDatabase
from tests.integration.test_call_store import VOCO, call
from tests.integration.test_cli import Server
from tests.integration.test_cli import server as server

SECRET = "cli-pbx-digest-secret"


def test_pbx_set_and_show(server: Server) -> None:
    empty = server.cli("pbx", "show")
    assert empty.returncode == 0, empty.stderr
    assert "none: no PBX may send calls" in empty.stdout
    changed = server.cli("pbx", "set", "--source", "192.0.2.10", "--source", "198.51.100.0/24",
                         "--target", "sip:pbx.example.com;transport=tcp,20",
                         "--target", "sip:192.0.2.10:5060,10,5", "--username", "pbx-1",
                         "--password-stdin", "--reason", "OPS-44", stdin=f"{SECRET}\n")
    assert changed.returncode == 0, changed.stderr
    assert "192.0.2.10/32, 198.51.100.0/24" in changed.stdout
    assert "sip:192.0.2.10:5060 (priority 10, weight 5); sip:pbx.example.com;transport=tcp " \
           "(priority 20, weight 1)" in changed.stdout
    assert "pbx-1, password set" in changed.stdout and SECRET not in changed.stdout
    shown = json.loads(server.cli("--json", "pbx", "show").stdout)
    assert shown["password_set"] is True and "password" not in shown
    assert shown["version"] == "1" and shown["etag"] == 'W/"1"'
    stale = server.cli("pbx", "set", "--enabled", "off", "--etag", 'W/"0"')
    assert stale.returncode != 0 and "etag" in stale.stderr
    off = server.cli("pbx", "set", "--enabled", "off", "--no-credentials", "--etag", 'W/"1"')
    assert off.returncode == 0, off.stderr
    assert "none (address alone)" in off.stdout and "enabled          no" in off.stdout
    bad = server.cli("pbx", "set", "--source", "0.0.0.0/0", "--target", "tel:+1")
    assert bad.returncode == Exit.INVALID
    assert "pbx.source_cidrs" in bad.stderr and "pbx.targets" in bad.stderr
    assert "Traceback" not in bad.stderr
    nothing = server.cli("pbx", "set")
    assert nothing.returncode == Exit.USAGE
    history = server.cli("--json", "audit", "list", "--subject", "pbx")
    assert "PbxCredentialsChanged" in history.stdout and "OPS-44" in history.stdout
    assert SECRET not in history.stdout


def test_calls_lists_the_records_newest_first_with_filters(server: Server) -> None:
    created = server.cli("trunk", "create", "voco", "--template", "thevoco", "--username",
                         "1001", "--password-stdin", stdin="a-long-trunk-password-1\n")
    assert created.returncode == 0, created.stderr
    trunk_id = json.loads(server.cli("--json", "trunk", "get", "voco").stdout)["id"]
    store = CallStore(SqliteDatabase(server.data / "var" / "views.sqlite"))
    store.record([call(1, tenant="default", trunks=((trunk_id, 200),)),
                  call(2, tenant="default", code=486, trunks=((VOCO, 486),)),
                  call(3, tenant="default", direction="inbound", number="15551234567",
                       trunks=((trunk_id, 200),))])
    listed = server.cli("calls")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["STARTED", "(UTC)", "DIRECTION"]
    assert [line.split()[2] for line in lines[1:]] == ["inbound", "outbound", "outbound"]
    assert "voco 486" in listed.stdout and "486 Busy Here" in listed.stdout
    busy = json.loads(server.cli("--json", "calls", "--code", "486").stdout)
    assert [c["call_id"] for c in busy["calls"]] == ["call-2"]
    on_voco = json.loads(server.cli("--json", "calls", "--trunk", "voco").stdout)
    assert [c["call_id"] for c in on_voco["calls"]] == ["call-3", "call-1"]
    paged = json.loads(server.cli("--json", "calls", "--limit", "2").stdout)
    rest = json.loads(server.cli("--json", "calls", "--limit", "2", "--page-token",
                                 paged["next_page_token"]).stdout)
    assert [c["call_id"] for c in paged["calls"] + rest["calls"]] == [
        "call-3", "call-2", "call-1"]
    windowed = json.loads(server.cli("--json", "calls", "--since", "2026-11-29T12:02:00Z",
                                     "--until", "2026-11-29T12:03:00Z").stdout)
    assert [c["call_id"] for c in windowed["calls"]] == ["call-2"]
    bad = server.cli("calls", "--direction", "sideways")
    assert bad.returncode == Exit.USAGE


def test_the_pbx_password_is_nowhere_to_be_read(tmp_path: Path) -> None:
    secret = "Pbx-Needle-In-The-Haystack-2718"
    server = Server(tmp_path, TRUNKPLANE_LOG_FORMAT="json", TRUNKPLANE_LOG_LEVEL="DEBUG")
    server.start()
    writes: list[tuple[tuple[str, ...], str]] = [
        (("pbx", "set", "--source", "192.0.2.0/24", "--username", "pbx-1", "--password",
          secret), ""),
        (("pbx", "set", "--password-stdin"), secret + "-2\n")]
    reads: list[tuple[str, ...]] = [
        ("pbx", "show"), ("audit", "list"), ("audit", "list", "--subject", "pbx"),
        ("audit", "export", "--format", "jsonl"), ("config", "export")]
    try:
        for args, stdin in writes:
            result = server.cli(*args, stdin=stdin)
            assert result.returncode == 0, result.stderr
        outputs = server.read_all(reads)
    finally:
        server.stop()
    places = server.places(outputs)
    assert {"events.sqlite", "views.sqlite"} <= places.keys()
    assert [name for name, text in places.items() if secret in text] == []


def test_doctor_names_a_network_two_tenants_list(server: Server) -> None:
    for tenant, networks in (("one", ["10.0.0.0/8", "192.0.2.1"]), ("two", ["10.0.0.0/8"]),
                             ("three", ["10.1.0.0/16"])):
        flags = [f for n in networks for f in ("--source", n)]
        done = server.cli("--tenant", tenant, "pbx", "set", *flags)
        assert done.returncode == 0, done.stderr
    report = server.cli("doctor").stdout
    assert "FAIL PBX networks: 10.0.0.0/8 is listed by tenants one, two: calls from it are " \
           "refused" in report
    assert "10.1.0.0/16" not in report and "192.0.2.1" not in report
    fixed = server.cli("--tenant", "two", "pbx", "set", "--source", "10.2.0.0/16")
    assert fixed.returncode == 0, fixed.stderr
    assert "OK   PBX networks: 3 tenant PBX(es), no network listed by two tenants" in \
        server.cli("doctor").stdout
