"""What every subcommand shares: the common options, accepted before or after the
subcommand (`trunkplane --json trunk list` and `trunkplane trunk list --json` alike), and a
walk over the parser tree for help, completion and the tests that hold them complete."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

DEFAULT_SERVER = "127.0.0.1:50051"


def add_common(parser: argparse.ArgumentParser, *, root: bool) -> None:
    """The root parser carries the defaults; every subcommand repeats the options with
    SUPPRESS as default, so they only override the root's value when given there."""
    group = parser.add_argument_group("common options (before or after the subcommand)")

    def default(value: object) -> object:
        return value if root else argparse.SUPPRESS

    group.add_argument(
        "--server", metavar="HOST:PORT",
        default=default(os.environ.get("TRUNKPLANE_SERVER", DEFAULT_SERVER)),
        help=f"the service's gRPC address (env TRUNKPLANE_SERVER, default {DEFAULT_SERVER})")
    group.add_argument(
        "--tenant", metavar="TENANT",
        default=default(os.environ.get("TRUNKPLANE_TENANT", "default")),
        help="the tenant to act on (env TRUNKPLANE_TENANT, default 'default')")
    group.add_argument("--json", action="store_true", default=default(False),
                       help="machine-readable output: one JSON document (errors too, on "
                            "standard error)")
    group.add_argument("--views", metavar="DIR", default=default(""),
                       help="read the views `trunkplane replay --into DIR` built instead of "
                            "asking the server (trunk and route reads)")


def subcommands(parser: argparse.ArgumentParser) -> Iterator[
        tuple[argparse._SubParsersAction[argparse.ArgumentParser], str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield action, name, child


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree with the words that reach it, the root first."""
    yield path, parser
    for _, name, child in subcommands(parser):
        yield from walk(child, (*path, name))


def finish(root: argparse.ArgumentParser) -> None:
    """Gives every subcommand the common options and keeps examples' line breaks."""
    for path, parser in walk(root):
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        if path:
            add_common(parser, root=False)


def options(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
