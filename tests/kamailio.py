"""Kamailio from Debian as the provider's registrar and OPTIONS responder, for the tests:
digest users in SQLite, UDP, TCP and TLS on loopback ports of its own, every runtime file
in a temporary folder (see ../shared/INFRA-NOTES.md)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest

from tests.brokers import free_port

MODULES = ("kex", "corex", "tm", "tmx", "sl", "pv", "maxfwd", "textops", "siputils", "xlog",
           "sanity", "ctl", "usrloc", "registrar", "db_sqlite", "auth", "auth_db", "tls")
SCHEMAS = Path("/usr/share/kamailio/db_sqlite")

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children={children}
tcp_children={children}
auto_aliases=no
listen=udp:{address}:{udp}
listen=tcp:{address}:{tcp}
listen=tls:{address}:{tls}
enable_tls=yes
mpath="{modules}"
{loads}
modparam("ctl", "binrpc", "unix:{dir}/kamailio_ctl")
modparam("usrloc", "db_mode", {db_mode})
modparam("usrloc", "db_url", "sqlite://{dir}/kamailio.db")
modparam("registrar", "default_expires", {default_expires})
modparam("registrar", "min_expires", {min_expires})
modparam("registrar", "max_expires", {max_expires})
modparam("auth_db", "db_url", "sqlite://{dir}/kamailio.db")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")
modparam("tls", "config", "{dir}/tls.cfg")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
{calls}
    if (is_method("OPTIONS")) {{ sl_send_reply("{options_code}", "{options_reason}"); exit; }}
    if (is_method("REGISTER")) {{
{register_refusal}
        if (!auth_check("$fd", "subscriber", "1")) {{
            if ($rc == -3) {{ sl_send_reply("403", "Unknown User"); exit; }}
            auth_challenge("$fd", "1");
            exit;
        }}
        if (!save("location")) {{ sl_reply_error(); }}
        exit;
    }}
{invite}
    sl_send_reply("405", "Method Not Allowed");
}}
"""
# Call-proxy mode: in-dialog requests follow the Record-Route; INVITEs are authenticated
# (407, proxy_authorize) and go to the registered Contact of the user called, a DID first
# mapped to the user of the trunk that owns it.
CALL_MODULES = ("rr",)
CALL_PARAMS = """modparam("tm", "fr_timer", 2000)
modparam("tm", "fr_inv_timer", 30000)
"""
IN_DIALOG = """    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here"); exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }"""
# Outbound-proxy mode: every request is logged (`PROXY <method> <R-URI> route=<Route>`),
# a request outside a dialog must carry a Route (403 otherwise: a client that ignored its
# outbound proxy's loose routing; tests read the Route logged), and goes on, the Route
# naming this proxy taken off (loose_route), to its Request-URI;
# INVITEs are record-routed, so the dialog keeps passing here.
PROXY = """    xlog("L_NOTICE", "PROXY $rm $ru route=$hdr(Route)\\n");
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here"); exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    if (!is_present_hf("Route")) { sl_send_reply("403", "No Route to this proxy"); exit; }
    loose_route();
    if (is_method("INVITE")) { record_route(); }
    t_relay();
    exit;"""
INVITE = """    if (is_method("INVITE")) {
        if (!proxy_authorize("$fd", "subscriber")) { proxy_challenge("$fd", "1"); exit; }
        consume_credentials();
        record_route();
%s
        if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }
        t_relay();
        exit;
    }"""


def _modules() -> Path | None:
    for candidate in Path("/usr/lib").glob("*/kamailio/modules"):
        if (candidate / "registrar.so").exists():
            return candidate
    return None


class Kamailio:
    def __init__(self, workdir: Path, users: dict[str, str], address: str = "127.0.0.1",
                 domain: str = "127.0.0.1", default_expires: int = 3600,
                 min_expires: int = 10, max_expires: int = 3600, children: int = 2,
                 calls: bool = False, dids: dict[str, str] | None = None,
                 location_db: bool = False, proxy: bool = False,
                 options_reply: tuple[int, str] = (200, "OK"),
                 register_reply: tuple[int, str] | None = None,
                 client_ca: Path | None = None) -> None:
        """calls: proxy calls too (see CALL_*); dids: DID -> the user whose registered
        Contact gets calls for it. `location_db`: the location table written through to
        SQLite as it changes (usrloc db_mode 1), so a test can read every binding at once
        however many there are (`ul.dump` does not fit a few hundred into one kamcmd
        reply); one worker then, since SQLite takes one writer at a time.
        `proxy`: an outbound proxy, not a registrar (see PROXY). `options_reply`: how it
        answers OPTIONS; `register_reply`: every REGISTER answered so (a registrar out of
        service). `client_ca`: its TLS listener requires a client certificate
        signed by this CA (a PEM file)."""
        if shutil.which("kamailio") is None or _modules() is None:
            if os.environ.get("TRUNKPLANE_REQUIRE_POSTGRES"):  # `make test`: all servers
                raise RuntimeError("kamailio is not installed (make test installs it)")
            pytest.skip("no kamailio: apt-get install kamailio kamailio-sqlite-modules "
                        "kamailio-tls-modules (make test does)")
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.address = address
        self.udp, self.tcp, self.tls = free_port(), free_port(), free_port()
        self.cert = workdir / "tls.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", f"/CN={address}", "-addext", f"subjectAltName=IP:{address}",
                        "-keyout", str(workdir / "tls.key"), "-out", str(self.cert)],
                       check=True, capture_output=True)
        verify = "yes" if client_ca is not None else "no"
        (workdir / "tls.cfg").write_text(
            f"[server:default]\nmethod = TLSv1.2+\nverify_certificate = {verify}\n"
            f"require_certificate = {verify}\nprivate_key = {workdir / 'tls.key'}\n"
            f"certificate = {self.cert}\n"
            + (f"ca_list = {client_ca}\n" if client_ca is not None else ""))
        database = sqlite3.connect(workdir / "kamailio.db")
        for schema in ("standard-create.sql", "auth_db-create.sql", "usrloc-create.sql"):
            database.executescript((SCHEMAS / schema).read_text())
        database.execute("PRAGMA journal_mode=WAL")  # readers never block its writes
        database.executemany("INSERT INTO subscriber (username, domain, password) "
                             "VALUES (?, ?, ?)", [(u, domain, p) for u, p in users.items()])
        database.commit()
        database.close()
        modules = MODULES + (CALL_MODULES if calls or proxy else ())
        loads = "\n".join(f'loadmodule "{m}.so"' for m in modules)
        if calls or proxy:
            loads += "\n" + CALL_PARAMS
        mapping = "\n".join(f'        if ($rU == "{did}") {{ $rU = "{user}"; }}'
                            for did, user in (dids or {}).items())
        self.config = workdir / "kamailio.cfg"
        self._settings = dict(
            address=address, modules=_modules(), loads=loads, dir=workdir,
            default_expires=default_expires, min_expires=min_expires, max_expires=max_expires,
            children=1 if location_db else children, db_mode=1 if location_db else 0,
            calls=PROXY if proxy else IN_DIALOG if calls else "",
            invite=INVITE % mapping if calls else "",
            options_code=options_reply[0], options_reason=options_reply[1],
            register_refusal="" if register_reply is None else (
                f'        sl_send_reply("{register_reply[0]}", "{register_reply[1]}"); exit;'))
        self.log = workdir / "kamailio.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._first_start()

    def _first_start(self, attempts: int = 3) -> None:
        """The ports come from free_port(), and on a machine shared with other test runs
        another process may bind one before Kamailio does (seen once): new ports, again."""
        for attempt in range(attempts):
            self.config.write_text(CONFIG.format(udp=self.udp, tcp=self.tcp, tls=self.tls,
                                                 **self._settings))
            self.log.write_bytes(b"")
            try:
                self.start()
                return
            except RuntimeError:
                if attempt + 1 == attempts or "Address already in use" not in (
                        self.log.read_text()):
                    raise
                self.stop()
                self.udp, self.tcp, self.tls = free_port(), free_port(), free_port()

    def start(self) -> None:
        with self.log.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                ["kamailio", "-f", str(self.config), "-P", str(self.dir / "kamailio.pid"),
                 "-Y", str(self.dir), "-m", "64", "-M", "8", "-DD", "-E"],
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # its workers in a group of their own: stop() ends all
        deadline = time.monotonic() + 15
        while not (self.dir / "kamailio_ctl").exists() or "ul" not in self._rpc(
                "system.listMethods", check=False):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Ends the main process and every worker it forked: a worker left behind would
        keep the ports and answer for an instance the test believes stopped."""
        if self.process is not None:
            group = self.process.pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):  # stragglers of the group
                os.killpg(group, signal.SIGKILL)
            self.process.wait()
        (self.dir / "kamailio_ctl").unlink(missing_ok=True)

    def _rpc(self, *command: str, check: bool = True) -> str:
        done = subprocess.run(["kamcmd", "-s", f"unix:{self.dir}/kamailio_ctl", *command],
                              capture_output=True, text=True, timeout=10, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"kamcmd {' '.join(command)}: {done.stderr}")
        return done.stdout

    def proxied(self) -> list[str]:
        """What a proxy-mode instance logged: `<method> <R-URI> route=<Route>` per request."""
        return [line.split("PROXY ", 1)[1] for line in self.log.read_text().splitlines()
                if "PROXY " in line]

    def ul_dump(self) -> str:
        return self._rpc("ul.dump")

    def location_counts(self) -> tuple[int, int]:
        """(users, contacts) in the location table, from Kamailio's statistics (ul.dump
        does not fit thousands of contacts into one kamcmd reply)."""
        values = {}
        for line in self._rpc("stats.get_statistics", "usrloc:").splitlines():
            name, _, value = line.partition("=")
            if value.strip().isdigit():
                values[name.strip()] = int(value)
        return values.get("usrloc:location_users", 0), values.get("usrloc:location_contacts", 0)

    def bindings(self) -> dict[str, int]:
        """Contacts per user, from the written-through location table (`location_db`)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.dir / 'kamailio.db'}?mode=ro",
                                                uri=True, timeout=2)) as database:
            rows = database.execute("SELECT username, COUNT(*) FROM location "
                                    "GROUP BY username").fetchall()
        return {str(user): int(count) for user, count in rows}

    def locations(self) -> dict[str, list[str]]:
        """User -> Contact URIs bound, from the written-through table (`location_db`)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.dir / 'kamailio.db'}?mode=ro",
                                                uri=True, timeout=2)) as database:
            rows = database.execute("SELECT username, contact FROM location").fetchall()
        found: dict[str, list[str]] = {}
        for user, contact in rows:
            found.setdefault(str(user), []).append(str(contact))
        return found

    def contacts(self, user: str) -> list[str]:
        """The Contact URIs registered for a user (from `kamcmd ul.dump`)."""
        found, current = [], ""
        for line in self.ul_dump().splitlines():
            text = line.strip()
            if text.startswith("AoR:"):
                current = text.split(":", 1)[1].strip()
            elif text.startswith("Address:") and current.split("@")[0] == user:
                found.append(text.split(":", 1)[1].strip())
        return found

    def __enter__(self) -> Kamailio:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
