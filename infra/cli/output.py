"""Printing for the CLI: readable tables by default, JSON with --json. Tables fit the
terminal's width and colour the states only when the output is a terminal (and NO_COLOR is
not set); piped, they are plain text at full width, for grep and for files."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from domain.text import escape_control

GOOD = ("registered", "ok", "up", "alive", "intact", "active")
BAD = ("auth_failed", "forbidden", "unreachable", "down", "failed", "stale", "revoked",
       "TAMPERED", "FAIL")
COLOURS = {"good": "32", "bad": "31", "dim": "2"}


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def print_json(message: Message) -> None:
    print_data(as_dict(message))


def print_data(data: object, stream: TextIO | None = None) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False), file=stream or sys.stdout)


def is_terminal(stream: TextIO | None = None) -> bool:
    return (stream or sys.stdout).isatty()


def colour_on(stream: TextIO | None = None) -> bool:
    """Colour only for a person at a terminal that can show it (https://no-color.org)."""
    return (is_terminal(stream) and "NO_COLOR" not in os.environ
            and os.environ.get("TERM", "") != "dumb")


def paint(text: str, kind: str) -> str:
    return f"\x1b[{COLOURS[kind]}m{text}\x1b[0m" if colour_on() else text


def state_colour(text: str) -> str:
    word = text.split(" ", 1)[0]
    if word in GOOD:
        return paint(text, "good")
    return paint(text, "bad") if word in BAD else text


def terminal_width() -> int | None:
    return shutil.get_terminal_size().columns if is_terminal() else None


def fit(widths: list[int], room: int, narrowest: int = 8) -> list[int]:
    """Narrows the widest columns until the row fits `room` characters (two spaces between
    columns), none below `narrowest`; if that is not enough, the rightmost columns (the
    least important, by the tables' order) are left out: width 0."""
    widths = list(widths)
    shown = len(widths)

    def total() -> int:
        return sum(widths[:shown]) + 2 * (shown - 1)

    while total() > room:
        widest = max(range(shown), key=lambda i: widths[i])
        if widths[widest] > narrowest:
            widths[widest] -= 1
        elif shown > 1:
            shown -= 1
        else:
            break
    return widths[:shown] + [0] * (len(widths) - shown)


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
          colour: dict[int, Any] | None = None) -> None:
    """colour: column index -> function that colours a cell's padded text."""
    cells = [[escape_control(str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    room = terminal_width()
    if room:
        widths = fit(widths, room)
    shown = [i for i, w in enumerate(widths) if w]
    print("  ".join(_cell(headers[i].upper(), widths[i]).ljust(widths[i])
                    for i in shown).rstrip())
    for row in cells:
        texts = {i: _cell(row[i], widths[i]).ljust(widths[i]) for i in shown}
        for index, paint_cell in (colour or {}).items():
            if index in texts:
                texts[index] = paint_cell(texts[index])
        print("  ".join(texts[i] for i in shown).rstrip())


def fields(pairs: Sequence[tuple[str, object]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        print(f"{key.ljust(width)}  {escape_control(str(value))}")


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def note(text: str) -> None:
    """What a command did, for a person (standard error, so standard output stays the data)."""
    print(text, file=sys.stderr)
