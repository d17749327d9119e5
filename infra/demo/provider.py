"""The tour's demo provider: Kamailio on loopback as a SIP provider with one trunk account
and one DID, and a baresip phone registered to it, so the README's tour shows a real
registration, peer health and calls without sending anything beyond this machine.

Run by `make demo-provider` (foreground; Ctrl-C stops both). Runtime files go to
var/demo/ (or DEMO_DIR); the ports are DEMO_SIP_PORT (5070) and DEMO_PHONE_PORT (5074)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMAS = Path("/usr/share/kamailio/db_sqlite")
ACCOUNT = ("1001", "demo-password-1001")  # the trunk's account (the tour's voco)
PHONE = ("2001", "demo-password-2001")  # the demo phone, a subscriber of the provider
DID = "15551234567"  # rings the trunk: a call from the network to the PBX


def _modules() -> Path:
    for candidate in Path("/usr/lib").glob("*/kamailio/modules"):
        if (candidate / "registrar.so").exists():
            return candidate
    raise SystemExit("Kamailio's modules are missing: run `make demo-provider`, which "
                     "installs kamailio and kamailio-sqlite-modules")


def _render(template: str, values: dict[str, str]) -> str:
    text = (HERE / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def _database(directory: Path) -> None:
    path = directory / "kamailio.db"
    path.unlink(missing_ok=True)
    database = sqlite3.connect(path)
    for schema in ("standard-create.sql", "auth_db-create.sql"):
        database.executescript((SCHEMAS / schema).read_text())
    database.executemany("INSERT INTO subscriber (username, domain, password) VALUES (?, ?, ?)",
                         [(user, "127.0.0.1", password) for user, password in (ACCOUNT, PHONE)])
    database.commit()
    database.close()


def start_provider(directory: Path, port: int) -> subprocess.Popen[bytes]:
    _database(directory)
    config = directory / "kamailio.cfg"
    config.write_text(_render("kamailio.cfg.in", {
        "PORT": str(port), "DIR": str(directory), "MODULES": str(_modules()), "DID": DID}))
    process = subprocess.Popen(
        ["kamailio", "-f", str(config), "-P", str(directory / "kamailio.pid"),
         "-Y", str(directory), "-m", "64", "-M", "8", "-DD", "-E"],
        stdout=(directory / "kamailio.log").open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True)  # its workers in a group of their own, stopped together
    _wait_for(directory / "kamailio_ctl", process, directory / "kamailio.log")
    return process


def start_phone(directory: Path, provider_port: int, port: int) -> subprocess.Popen[bytes]:
    phone = directory / "phone"
    phone.mkdir(exist_ok=True)
    (phone / "config").write_text(_render("baresip.config.in", {"PHONE_PORT": str(port)}))
    user, password = PHONE
    (phone / "accounts").write_text(
        f"<sip:{user}@127.0.0.1:{provider_port}>;auth_pass={password};regint=600;"
        "answermode=auto\n")  # the tour's call through the agent is answered
    (phone / "contacts").write_text("")
    return subprocess.Popen(["baresip", "-4", "-f", str(phone)], stdin=subprocess.DEVNULL,
                            stdout=(phone / "baresip.log").open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(path: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the demo provider did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> int:
    directory = Path(os.environ.get("DEMO_DIR", "var/demo")).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("DEMO_SIP_PORT", "5070"))
    phone_port = int(os.environ.get("DEMO_PHONE_PORT", "5074"))
    provider = start_provider(directory, port)
    phone = start_phone(directory, port, phone_port)
    print(f"demo provider: sip:127.0.0.1:{port} (UDP and TCP), account {ACCOUNT[0]} / "
          f"{ACCOUNT[1]}, DID {DID} rings it\n"
          f"demo phone:    {PHONE[0]} registered from 127.0.0.1:{phone_port}\n"
          f"logs in {directory}; Ctrl-C stops both", flush=True)
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping and provider.poll() is None:
        time.sleep(0.2)
    stop(phone)
    stop(provider)
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
