"""The CLI's parser holds itself to what people expect of a command line: help for every
subcommand and option, the common options anywhere, one exit code per class of failure,
and a completion script that knows every word."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import grpc
import pytest

from infra.cli.common import walk
from infra.cli.completion import script
from infra.cli.exits import MEANING, Exit, for_status
from infra.cli.main import parser

README = Path(__file__).resolve().parents[2] / "README.md"


def _undocumented() -> list[str]:
    missing = []
    for path, p in walk(parser()):
        where = " ".join(("trunkplane", *path))
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{where} {c.dest}" for c in action._choices_actions
                            if not (c.help or "").strip()]
            elif not (action.help or "").strip():
                missing.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_subcommand_and_option_has_help() -> None:
    assert _undocumented() == []


def test_no_metavariable_shows_a_python_name() -> None:
    shown = [p.format_usage() for _, p in walk(parser())]
    leaks = [line for line in shown if re.search(r"SET_|__", line)]
    assert leaks == []


def test_examples_in_the_help_of_the_root_and_each_group() -> None:
    root = parser()
    assert "examples:" in root.format_help()
    groups = {path[0]: p for path, p in walk(root) if len(path) == 1}
    for name in ("trunk", "route", "channel", "audit", "config", "projections"):
        assert "examples:" in groups[name].format_help(), name


@pytest.mark.parametrize("argv", [
    ["--json", "--tenant", "acme", "--server", "h:1", "trunk", "history", "voco"],
    ["trunk", "history", "voco", "--json", "--tenant", "acme", "--server", "h:1"],
    ["trunk", "--json", "history", "--tenant", "acme", "voco", "--server", "h:1"],
])
def test_common_options_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    assert (args.json, args.tenant, args.server, args.trunk) == (True, "acme", "h:1", "voco")


def test_common_options_default_from_the_root() -> None:
    args = parser().parse_args(["trunk", "list"])
    assert args.json is False and args.tenant and args.server


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        parser().parse_args(["--version"])
    assert done.value.code == 0
    assert re.fullmatch(r"trunkplane \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_exit_codes_are_distinct_and_documented() -> None:
    assert len({int(code) for code in Exit}) == len(Exit) == len(MEANING)
    classes = {for_status(code) for code in (
        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.RESOURCE_EXHAUSTED)}
    assert len(classes) == 6 and Exit.USAGE not in classes
    readme = README.read_text()
    for code, meaning in MEANING.items():
        assert f"| {int(code)} | {meaning} |" in readme, code
    assert "exit codes:" in parser().format_help()


def _complete(words: str) -> list[str]:
    text = script(parser(), "bash")
    line = words.split(" ")
    program = (f"{text}\nCOMP_WORDS=({' '.join(repr(w) for w in line)})\n"
               f"COMP_CWORD={len(line) - 1}\n_trunkplane\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30,
                          check=True)
    return done.stdout.split()


def test_completion_offers_subcommands_options_and_choices() -> None:
    assert _complete("trunkplane tr") == ["trunk"]
    assert set(_complete("trunkplane trunk ")) >= {"create", "status", "history", "--json"}
    assert _complete("trunkplane trunk create voco --tr") == ["--transport"]
    assert _complete("trunkplane --json trunk list --enabled ") == ["yes", "no"]
    assert _complete("trunkplane completion ") [:2] == ["bash", "zsh"]


def test_a_tenant_being_taken_over_is_not_mistaken_for_a_server_down() -> None:
    from infra.cli.client import hints

    class Refused(grpc.RpcError):
        def __init__(self, details: str) -> None:
            self._details = details

        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return self._details

    assert hints(Refused("tenant 'acme' is being taken over by this agent: the calls in "
                         "progress on its trunks are not known yet; try again in a moment"),
                 None) == []
    assert "is the server running?" in hints(Refused("failed to connect"), None)[0]
