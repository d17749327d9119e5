"""The CLI against people's habits (issue 18): the real `trunkplane` against a real `serve`."""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

from infra.cli.exits import Exit
from tests.integration.test_cli import CLI, Server, free_port
from tests.integration.test_cli import server as server


def _create_peer(server: Server, name: str, *extra: str) -> None:
    done = server.cli("trunk", "create", name, "--type", "peer", "--peer", "127.0.0.1:9",
                      *extra)
    assert done.returncode == 0, done.stderr


def test_json_and_the_common_options_after_the_subcommand(server: Server) -> None:
    _create_peer(server, "voco")
    history = server.cli("trunk", "history", "voco", "--json")
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout)["entries"][0]["event_type"] == "TrunkCreated"
    elsewhere = server.cli("trunk", "list", "--tenant", "acme", "--json")
    assert json.loads(elsewhere.stdout).get("trunks", []) == []
    local = server.local_env()
    for argv in (["tokens", "list", "--json"], ["keys", "list", "--json"],
                 ["--json", "tokens", "create", "--principal", "x", "--role", "auditor"]):
        done = subprocess.run([*CLI, *argv], env=local, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, (argv, done.stderr)
        json.loads(done.stdout)
    doctor = subprocess.run([*CLI, "doctor", "--json", "--server", f"127.0.0.1:{server.port}"],
                            env=local, capture_output=True, text=True, timeout=60, check=False)
    findings = json.loads(doctor.stdout)["findings"]
    assert any(f["subject"] == "service" and f["level"] == "ok" for f in findings)
    kafka = subprocess.run([*CLI, "kafka", "init", "--json"], env=local, capture_output=True,
                           text=True, timeout=60, check=False)
    assert kafka.returncode == Exit.SETTINGS
    assert "TRUNKPLANE_KAFKA_BOOTSTRAP" in json.loads(kafka.stderr)["error"]["message"]


def test_codecs_default_and_the_spellings_of_pbx_forms(server: Server) -> None:
    _create_peer(server, "plain")
    shown = json.loads(server.cli("trunk", "get", "plain", "--json").stdout)
    assert shown["codecs"] == ["PCMU", "PCMA"]
    _create_peer(server, "spelled", "--codecs", "G.711a (PCMA),ulaw,g.729")
    shown = json.loads(server.cli("trunk", "get", "spelled", "--json").stdout)
    assert shown["codecs"] == ["PCMA", "PCMU", "G729"]
    templated = server.cli("trunk", "create", "t", "--template", "thevoco", "--username", "u",
                           "--password", "Long-Enough-Password-1", "--json")
    assert json.loads(templated.stdout)["trunk"]["codecs"] == ["PCMU", "PCMA", "OPUS"]


def test_every_mistake_at_once(server: Server) -> None:
    bad = server.cli("trunk", "create", "bad", "--type", "register", "--host", "a b",
                     "--max-calls", "-1", "--max-registrations", "-3",
                     "--codecs", "G722,PCMU,FOO")
    assert bad.returncode == Exit.INVALID, bad.stderr
    assert "Value out of range" not in bad.stderr
    for text in ("trunk.host:", "trunk.username:", "trunk.call_limits.max_concurrent_calls: "
                 "must be 0 to 9999", "'G722' is not one of", "'FOO' is not one of"):
        assert text in bad.stderr, text
    policy = server.cli("route", "policy", "--daily-cap", "-5", "--max-per-minute", "-1",
                        "--block-prefix", "x")
    assert policy.returncode == Exit.INVALID, policy.stderr
    for text in ("guard.daily_cap", "guard.max_calls_per_minute", "guard.block_prefixes[0]"):
        assert text in policy.stderr, text


def test_exit_codes_per_class_of_failure(server: Server) -> None:
    _create_peer(server, "used")
    route = server.cli("route", "outbound", "create", "r", "--pattern", "NXXNXXXXXX",
                       "--trunk", "used")
    assert route.returncode == 0, route.stderr
    assert server.cli("trunk", "get", "nothing").returncode == Exit.NOT_FOUND
    never = server.cli("channel", "release", "LEASE_ID")
    assert never.returncode == Exit.NOT_FOUND and "never issued" in never.stderr
    assert server.cli("trunk", "delete", "used").returncode == Exit.CONFLICT
    assert server.cli("trunk", "create", "used", "--type", "peer", "--peer",
                      "127.0.0.1:9").returncode == Exit.CONFLICT
    assert server.cli("trunk", "create", "x", "--type", "nonsense").returncode == Exit.INVALID
    assert server.cli("trunk", "frobnicate").returncode == Exit.USAGE
    denied = server.cli("route", "resolve", "2125551234", "--from", "1")
    assert denied.returncode in (Exit.OK, Exit.NOT_ALLOWED)
    env = {**server.local_env(), "TRUNKPLANE_TOKEN": "not-a-token"}
    refused = subprocess.run([*CLI, "--server", f"127.0.0.1:{server.port}", "trunk", "list",
                              "--json"], env=env, capture_output=True, text=True, timeout=60,
                             check=False)
    assert refused.returncode == Exit.NOT_ALLOWED
    assert json.loads(refused.stderr)["error"]["code"] == "UNAUTHENTICATED"
    down = subprocess.run([*CLI, "--server", f"127.0.0.1:{free_port()}", "trunk", "list"],
                          env=server.local_env(), capture_output=True, text=True, timeout=60,
                          check=False)
    assert down.returncode == Exit.UNAVAILABLE


def test_tls_failure_names_the_ca_file(server: Server, tmp_path: Path) -> None:
    """Outside the repository, with a token but no CA: say that TLS failed, and where."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "TRUNKPLANE_TOKEN": server.token,
           "TRUNKPLANE_DATA": str(elsewhere / "var")}
    done = subprocess.run([*CLI, "--server", f"localhost:{server.port}", "trunk", "list"],
                          env=env, cwd=elsewhere, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == Exit.UNAVAILABLE
    assert "TLS failed" in done.stderr and str(elsewhere / "var" / "tls.crt") in done.stderr
    assert "TRUNKPLANE_TLS_CA" in done.stderr
    trusted = subprocess.run([*CLI, "--server", f"localhost:{server.port}", "trunk", "list"],
                             env={**env, "TRUNKPLANE_TLS_CA": str(server.data / "var" /
                                                                  "tls.crt")},
                             cwd=elsewhere, capture_output=True, text=True, timeout=60,
                             check=False)
    assert trusted.returncode == 0, trusted.stderr


def test_exports_say_what_they_wrote_and_secrets_need_a_passphrase(
        server: Server, tmp_path: Path) -> None:
    _create_peer(server, "voco")
    backup = tmp_path / "backup.json"
    plain = server.cli("config", "export", "--output", str(backup))
    assert plain.returncode == 0
    assert f"wrote {backup}" in plain.stderr and "passwords left out" in plain.stderr
    piped = subprocess.run([*CLI, "--server", f"127.0.0.1:{server.port}", "config", "export",
                            "--with-secrets"], env=server.local_env(), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60, check=False)
    assert piped.returncode == Exit.USAGE
    assert "--passphrase-stdin" in piped.stderr and "Traceback" not in piped.stderr
    changes = tmp_path / "changes.jsonl"
    audit = server.cli("audit", "export", "--format", "jsonl", "--output", str(changes),
                       "--json")
    assert json.loads(audit.stdout)["written"] == str(changes)
    assert json.loads(audit.stdout)["bytes"] == changes.stat().st_size > 0


def test_deleted_trunk_history_diff_to_now_and_names_not_ids(server: Server) -> None:
    _create_peer(server, "old")
    _create_peer(server, "carrier")
    trunk_id = json.loads(server.cli("trunk", "get", "old", "--json").stdout)["id"]
    assert server.cli("trunk", "update", "old", "--dtmf", "info").returncode == 0
    diff = server.cli("audit", "diff", "old", "--from-version", "1")
    assert diff.returncode == 0, diff.stderr
    assert "dtmf_mode" in diff.stdout and "version 1 -> 2" in diff.stdout
    assert server.cli("trunk", "delete", "old").returncode == 0
    gone = server.cli("trunk", "history", "old")
    assert gone.returncode == Exit.NOT_FOUND
    assert f"trunk 'old' was deleted; its history: trunkplane trunk history {trunk_id}" \
        in gone.stderr
    assert server.cli("trunk", "history", trunk_id).returncode == 0

    carrier = json.loads(server.cli("trunk", "get", "carrier", "--json").stdout)["id"]
    for args in (("route", "inbound", "create", "--did", "15551234567", "--trunk", "carrier",
                  "--destination", "ext:1"),
                 ("route", "outbound", "create", "us", "--pattern", "NXXNXXXXXX", "--trunk",
                  "carrier")):
        done = server.cli(*args)
        assert done.returncode == 0 and carrier not in done.stdout, done.stdout
    listed = server.cli("route", "inbound", "list")
    assert "carrier" in listed.stdout and carrier not in listed.stdout.split("\n", 1)[1]
    history = server.cli("route", "outbound", "history", "us")
    assert "carrier" in history.stdout and carrier not in history.stdout


def test_progress_is_plain_lines_when_piped(server: Server) -> None:
    _create_peer(server, "voco")
    rebuilt = server.cli("projections", "rebuild", "history")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "\r" not in rebuilt.stderr and "100.0%" in rebuilt.stderr
    assert "[" not in rebuilt.stderr  # no bar drawn into a file


def test_tables_fit_the_terminal_and_colour_only_there(server: Server) -> None:
    _create_peer(server, "a-trunk-with-a-rather-long-name-to-show-truncation",
                 "--description", "x")
    env = {**server.local_env(), "COLUMNS": "80", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    at_terminal = _in_terminal([*CLI, "--server", f"127.0.0.1:{server.port}", "trunk",
                                "status"], env)
    lines = [line for line in _plain(at_terminal).splitlines() if line.strip()]
    assert lines and all(len(line) <= 80 for line in lines), lines
    assert "…" in at_terminal
    piped = server.cli("trunk", "status")
    assert "\x1b[" not in piped.stdout and any(len(x) > 80 for x in piped.stdout.splitlines())
    no_colour = _in_terminal([*CLI, "--server", f"127.0.0.1:{server.port}", "trunk",
                              "status"], {**env, "NO_COLOR": "1"})
    assert "\x1b[" not in no_colour


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r", "")


def _in_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Runs argv with its standard output on a pseudo-terminal, as a person's shell would."""
    primary, secondary = pty.openpty()
    done = subprocess.run(argv, env=env, stdout=secondary, stderr=subprocess.PIPE,
                          timeout=60, check=False)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert done.returncode == 0, done.stderr
    return b"".join(chunks).decode()


def test_a_closed_port_is_noticed_at_once_and_warned_about_once(tmp_path: Path) -> None:
    """ICMP port-unreachable ends the REGISTER transactions at once (not after timer F's
    32 s); the four registrations of an account failing alike are one warning, by name."""
    server = Server(tmp_path, TRUNKPLANE_SIP_STARTUP_SPREAD="0")
    server.start()
    try:
        closed = free_port()
        created = server.cli("trunk", "create", "acct", "--type", "account", "--host",
                             f"127.0.0.1:{closed}", "--username", "u", "--auth-id", "u",
                             "--password", "Long-Enough-Password-1", "--max-registrations",
                             "4")
        assert created.returncode == 0, created.stderr
        deadline = time.monotonic() + 8  # timer F alone would take 32 s
        while (state := json.loads(server.cli("trunk", "status", "acct", "--json").stdout)
               ).get("state") != "unreachable":
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert "port unreachable (ICMP)" in state["reason"]
    finally:
        server.stop()
    warnings = [line for line in server.log.read_text().splitlines()
                if "unreachable" in line and "WARNING" in line]
    assert len(warnings) == 1, warnings
    assert "trunk acct (default/" in warnings[0]


def test_doctor_connects_only_where_the_agent_may_send(server: Server) -> None:
    for name, transport in (("far-tcp", "tcp"), ("far-udp", "udp")):
        created = server.cli("trunk", "create", name, "--type", "register", "--host",
                             "192.0.2.10", "--transport", transport, "--username", "u",
                             "--password", "Long-Enough-Password-1")
        assert created.returncode == 0, created.stderr
    env = {**server.local_env(),
           "TRUNKPLANE_METRICS_LISTEN": f"127.0.0.1:{server.metrics_port}"}
    report = subprocess.run([*CLI, "--server", f"127.0.0.1:{server.port}", "doctor", "--json"],
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    findings = json.loads(report.stdout)["findings"]
    for name in ("far-tcp", "far-udp"):
        refused = [f for f in findings if f["subject"] == f"trunk {name}"
                   and "TRUNKPLANE_SIP_DESTINATIONS" in f["text"]]
        assert refused and refused[0]["level"] == "fail", findings
        assert "TRUNKPLANE_SIP_DESTINATIONS" in refused[0]["fix"]
    assert not any("accepts TCP connections" in f["text"] and "192.0.2.10" in f["text"]
                   for f in findings)


def test_doctor_names_its_own_destinations_when_they_refuse_a_trunk_the_agent_has_up(
        tmp_path: Path) -> None:
    """The server may send to loopback (its TRUNKPLANE_SIP_DESTINATIONS); doctor runs from a
    shell without that variable. Its own probe may not send there: a warning that says whose
    setting refused, not a failure of a trunk the agent reports ok."""
    provider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    provider.bind(("127.0.0.1", 0))
    provider.settimeout(0.2)
    stop = threading.Event()

    def answer() -> None:  # 200 to every OPTIONS
        while not stop.is_set():
            try:
                data, source = provider.recvfrom(65536)
            except OSError:
                continue
            head = data.split(b"\r\n\r\n")[0].split(b"\r\n")
            echoed = b"\r\n".join(h for h in head[1:] if h.split(b":")[0].lower() in (
                b"via", b"from", b"to", b"call-id", b"cseq"))
            provider.sendto(b"SIP/2.0 200 OK\r\n" + echoed + b"\r\nContent-Length: 0\r\n\r\n",
                            source)

    answering = threading.Thread(target=answer, daemon=True)
    answering.start()
    server = Server(tmp_path, TRUNKPLANE_SIP_DESTINATIONS="127.0.0.0/8",
                    TRUNKPLANE_SIP_STARTUP_SPREAD="0")
    server.start()
    try:
        _create_peer_at(server, "near", f"127.0.0.1:{provider.getsockname()[1]}")
        deadline = time.monotonic() + 30
        while (state := json.loads(server.cli("trunk", "status", "near", "--json").stdout)
               ).get("state") != "ok":
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        env = server.local_env()
        env.pop("TRUNKPLANE_SIP_DESTINATIONS", None)  # the shell's: loopback not allowed
        report = subprocess.run([*CLI, "--server", f"127.0.0.1:{server.port}", "doctor",
                                 "--json"], env=env, capture_output=True, text=True,
                                timeout=60, check=False)
        near = [f for f in json.loads(report.stdout)["findings"]
                if f["subject"] == "trunk near"]
        assert not [f for f in near if f["level"] == "fail"], near
        warned = [f for f in near if "not probed from here" in f["text"]]
        assert warned and warned[0]["level"] == "warn", near
        assert "doctor's own TRUNKPLANE_SIP_DESTINATIONS" in warned[0]["text"]
        assert any(f["level"] == "ok" and "reports ok" in f["text"] for f in near), near
    finally:
        server.stop()
        stop.set()
        answering.join(timeout=5)
        provider.close()


def _create_peer_at(server: Server, name: str, address: str) -> None:
    done = server.cli("trunk", "create", name, "--type", "peer", "--peer", address)
    assert done.returncode == 0, done.stderr


def test_read_commands_read_a_replayed_directory(server: Server, tmp_path: Path) -> None:
    created = json.loads(server.cli("trunk", "create", "voco", "--type", "peer", "--peer",
                                    "192.0.2.1", "--json").stdout)
    assert server.cli("trunk", "update", "voco", "--dtmf", "info").returncode == 0
    _create_peer(server, "later")
    into = tmp_path / "as-of-create"
    replayed = subprocess.run([*CLI, "replay", "--position", str(created["position"]),
                               "--into", str(into)], env=server.local_env(),
                              capture_output=True, text=True, timeout=60, check=False)
    assert replayed.returncode == 0, replayed.stderr
    assert f"--views {into}" in replayed.stdout
    env = server.local_env()

    def at_replay(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args, "--views", str(into)], env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    then = at_replay("trunk", "get", "voco", "--json")
    assert then.returncode == 0, then.stderr
    assert then.stderr == ""
    assert json.loads(then.stdout)["dtmf_mode"] == "rfc2833"
    assert json.loads(server.cli("trunk", "get", "voco", "--json").stdout)["dtmf_mode"] == "info"
    names = [t["name"] for t in json.loads(at_replay("trunk", "list", "--json").stdout)["trunks"]]
    assert names == ["voco"]
    history = at_replay("trunk", "history", "voco")
    assert history.returncode == 0 and "TrunkCreated" in history.stdout
    assert "DtmfModeChanged" not in history.stdout
    refused = at_replay("trunk", "create", "x", "--type", "peer", "--peer", "192.0.2.9")
    assert refused.returncode == Exit.CONFLICT and "read-only" in refused.stderr
    nowhere = subprocess.run([*CLI, "trunk", "list", "--views", str(tmp_path / "nothing")],
                             env=env, capture_output=True, text=True, timeout=60, check=False)
    assert nowhere.returncode == Exit.SETTINGS and "replay" in nowhere.stderr
