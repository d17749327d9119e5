"""Command-line flags that set fields of a proto message by path, and the update mask
that names exactly the fields given."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from infra.cli.exits import Exit


@dataclass(frozen=True)
class Flag:
    flag: str
    path: str
    kind: str = "str"  # str | int | list (repeatable) | csv | onoff | file (its text)
    help: str = ""


def metavar(f: Flag) -> str:
    """The placeholder people read in --help: N for numbers, else the flag's own name
    (argparse would show the dest, e.g. SET_CALL_LIMITS__MAX_CONCURRENT_CALLS)."""
    return "N" if f.kind == "int" else f.flag.lstrip("-").upper().replace("-", "_")


def add_flags(parser: argparse.ArgumentParser, flags: list[Flag]) -> None:
    for f in flags:
        dest = f"set_{f.path.replace('.', '__')}"
        if f.kind == "list":
            parser.add_argument(f.flag, dest=dest, action="append", metavar=metavar(f),
                                help=f.help)
        elif f.kind == "int":
            parser.add_argument(f.flag, dest=dest, type=int, metavar="N", help=f.help)
        elif f.kind == "onoff":
            parser.add_argument(f.flag, dest=dest, choices=("on", "off"), help=f.help)
        else:
            parser.add_argument(f.flag, dest=dest, metavar=metavar(f), help=f.help)


def apply_flags(message: Message, args: argparse.Namespace, flags: list[Flag]) -> list[str]:
    """Sets every given flag's field on message; returns the paths set."""
    paths = []
    for f in flags:
        value = getattr(args, f"set_{f.path.replace('.', '__')}", None)
        if value is None:
            continue
        if f.kind == "csv":
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif f.kind == "onoff":
            value = value == "on"
        elif f.kind == "file":
            value = _read(f, value)
        try:
            set_path(message, f.path, value)
        except (ValueError, TypeError) as error:  # e.g. a number beyond 32 bits
            print(f"error: {f.flag} {value!r}: {error}", file=sys.stderr)
            raise SystemExit(Exit.USAGE) from None
        paths.append(f.path)
    return paths


def _read(f: Flag, path: str) -> str:
    """A file flag's text; an empty path clears the field."""
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as source:
            return source.read()
    except (OSError, UnicodeDecodeError) as error:
        print(f"error: {f.flag} {path}: {error}", file=sys.stderr)
        raise SystemExit(Exit.USAGE) from None


def set_path(message: Message, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    target: Any = message
    for name in parents:
        target = getattr(target, name)
    if isinstance(value, list):
        field = getattr(target, leaf)
        del field[:]
        field.extend(value)
    else:
        setattr(target, leaf, value)
