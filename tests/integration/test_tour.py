"""The README's tour, as written, against `make demo-provider`'s Kamailio and baresip and a
real `trunkplane serve`: every command runs with the exit code the README gives it (0 unless
marked `(exit N)`). Ports are the test's own (the README's 5070/5072 and 50051 are
replaced), so the test can run beside anything else on the machine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.brokers import free_port
from tests.integration.test_cli import Server

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class Step:
    command: str
    exit_code: int


def tour_steps(readme: str) -> list[Step]:
    """The commands of the tour's first sh block, continuation lines joined, with the
    exit code its comments announce."""
    section = readme[readme.index("## A five-minute tour"):]
    block = section[section.index("```sh\n") + 6:section.index("```\n", section.index("```sh"))]
    steps: list[Step] = []
    pending = 0
    lines = block.replace("\\\n", " ").splitlines()
    for line in lines:
        code, _, comment = line.partition("  #") if not line.startswith("#") else ("", "", line)
        marked = re.search(r"\(exit (\d+)\)", comment)
        if not code.strip():
            pending = int(marked.group(1)) if marked else pending
            continue
        steps.append(Step(" ".join(code.split()), int(marked.group(1)) if marked else pending))
        pending = 0
    return steps


@dataclass
class Demo:
    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    env: dict[str, str]
    pbx: int


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    if subprocess.run(["which", "kamailio", "baresip"], capture_output=True,
                      check=False).returncode != 0:
        if os.environ.get("TRUNKPLANE_REQUIRE_POSTGRES"):
            raise RuntimeError("kamailio or baresip is missing (make test installs them)")
        pytest.skip("no kamailio or baresip: make demo-provider installs them")
    port, pbx = free_port(), free_port()
    directory = tmp_path / "demo"
    env = {**os.environ, "DEMO_DIR": str(directory), "DEMO_SIP_PORT": str(port),
           "DEMO_PHONE_PORT": str(free_port()), "DEMO_PBX_PORT": str(pbx),
           "DEMO_PHONE_CTRL": str(free_port()), "DEMO_PBX_CTRL": str(free_port())}
    process = subprocess.Popen([sys.executable, str(ROOT / "infra/demo/provider.py")],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    banner = process.stdout.readline().decode()
    assert banner.startswith("demo provider:"), banner + process.stdout.read().decode()
    yield Demo(port, process, directory, env, pbx)
    process.terminate()
    assert process.wait(timeout=30) == 0


def _run(step: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", step], env=env, capture_output=True, text=True,
                          timeout=60, check=False, cwd=env["TOUR_DIR"])


def test_the_readme_tour_word_for_word(demo: Demo, tmp_path: Path) -> None:
    pbx_face = free_port()
    server = Server(tmp_path, TRUNKPLANE_PBX_LISTEN=f"127.0.0.1:{pbx_face}")
    server.start()
    env = {**demo.env, **server.local_env(), "PATH": f"{BIN}:{os.environ['PATH']}",
           "TRUNKPLANE_SERVER": f"127.0.0.1:{server.port}", "TOUR_DIR": str(tmp_path)}
    silent = free_port()
    lease = ""
    outputs: dict[str, str] = {}
    try:
        for step in tour_steps((ROOT / "README.md").read_text()):
            command = (step.command.replace("127.0.0.1:5070", f"127.0.0.1:{demo.port}")
                       .replace("127.0.0.1:5072", f"127.0.0.1:{silent}")
                       .replace("127.0.0.1:5076", f"127.0.0.1:{demo.pbx}")
                       .replace("make demo-call",  # what the make target runs
                                f"{sys.executable} {ROOT}/infra/demo/provider.py call")
                       .replace("127.0.0.1:5080", f"127.0.0.1:{pbx_face}")
                       .replace(" infra/demo/", f" {ROOT}/infra/demo/")  # run elsewhere
                       .replace("LEASE_ID", lease))
            deadline = time.monotonic() + 20
            while True:  # reads of what the agent observes: it registers within seconds
                done = _run(command, env)
                settled = "registering" not in done.stdout and "unknown" not in done.stdout
                if (done.returncode == step.exit_code and settled) or not any(
                        command.startswith(f"trunkplane {r}")
                        for r in ("trunk status", "channel acquire")) \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert done.returncode == step.exit_code, (command, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr, done.stderr
            outputs[command] = done.stdout
            if command.startswith("trunkplane channel acquire"):
                lease = re.search(r"^lease\s+(\S+)", done.stdout, re.M).group(1)  # type: ignore[union-attr]
        status = json.loads(_run("trunkplane trunk status --json", env).stdout)["statuses"]
        states = {s["trunk_name"]: (s["state"], s.get("sip_code")) for s in status}
        assert states["voco"] == ("registered", 200)
        assert states["carrier"] == ("ok", 200)
        table = next(v for k, v in outputs.items() if k == "trunkplane trunk status")
        voco = next(line for line in table.splitlines() if line.startswith("voco"))
        assert re.search(r"registered\s+200\s+OK", voco), voco
        resolved = next(v for k, v in outputs.items() if "--from 1001" in k and "resolve" in k)
        assert "12125551234" in resolved and "voco" in resolved
        acquired = next(v for k, v in outputs.items() if "channel acquire" in k)
        assert re.search(r"^trunk\s+voco$", acquired, re.M), acquired
        answered = next(v for k, v in outputs.items() if "provider.py call" in k)
        assert "15551234567: answered" in answered
        placed = next(v for k, v in outputs.items() if "demo/call.py" in k)
        assert "407" not in placed and "200 OK" in placed, placed  # the agent took the 407
        deadline = time.monotonic() + 20  # the agent writes its call records off its loop
        while len(records := json.loads(_run("trunkplane calls --json", env).stdout)[
                "calls"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [(r["direction"], r["final_code"], r["number_sent"]) for r in records] == [
            ("inbound", 200, "15551234567"), ("outbound", 200, "2001")], records  # newest first
    finally:
        server.stop()


def test_a_status_outlived_by_its_source_shows_as_stale(demo: Demo, tmp_path: Path) -> None:
    """Restarted without SIP, the agent observes nothing: the last run's `ok` is stale."""
    server = Server(tmp_path)
    server.start()
    try:
        created = server.cli("trunk", "create", "carrier", "--type", "peer", "--peer",
                             f"127.0.0.1:{demo.port}")
        assert created.returncode == 0, created.stderr
        deadline = time.monotonic() + 20
        while (shown := json.loads(server.cli("trunk", "status", "carrier", "--json").stdout)
               ).get("state") != "ok":
            assert time.monotonic() < deadline, shown
            time.sleep(0.3)
        assert not shown.get("stale")
        assert server.stop() == 0
        server.env["TRUNKPLANE_SIP"] = "off"
        server.start()
        deadline = time.monotonic() + 30  # until the new run's first heartbeat
        while True:
            later = json.loads(server.cli("trunk", "status", "carrier", "--json").stdout)
            table = server.cli("trunk", "status").stdout
            row = next(line for line in table.splitlines() if line.startswith("carrier"))
            reported = later["observed_at"][:19].replace("T", " ")
            if later.get("stale") and (
                    f"stale ({later['state']}, last reported {reported})" in row):
                break
            assert time.monotonic() < deadline, (later, row, server.cli("agents").stdout)
            time.sleep(0.3)
        # ok as last reported; unknown when the restart outlasted the agent's silence
        # limit (9 s) on a loaded machine and the control plane said so first
        assert later["state"] in ("ok", "unknown"), later
    finally:
        server.stop()
