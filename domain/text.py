"""Free text: how names compare, and how text from users or the wire is made safe to show.

Names compare after NFKC normalisation, case folding and a confusable skeleton in the
style of Unicode TR39, so `café` (NFC or NFD), `café` in fullwidth letters, `voco` with
a Cyrillic `o` and `VOCO` are one name. The skeleton uses a small table of the look-alikes
that matter for names typed in Latin script (Cyrillic and Greek letters, a few symbols and
the digits 0 and 1), not the whole of confusables.txt: it catches the common spoofs, not
every one.

Text is shown in three places, each with its own hazard: a terminal (escape sequences
redraw the screen, a line feed draws a fake row), a log line (a line break forges the next
line) and a spreadsheet (a cell starting with `=`, `+`, `-` or `@` is a formula)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Look-alikes of Latin letters, after case folding (TR39 confusables, reduced).
CONFUSABLES = str.maketrans({
    # Cyrillic (and the Latin script g)
    "\u0430": "a", "\u0432": "b", "\u0435": "e", "\u0451": "e", "\u04bb": "h",
    "\u0456": "i", "\u0457": "i",
    "\u0458": "j", "\u043a": "k", "\u043c": "m", "\u043d": "h", "\u043e": "o",
    "\u0440": "p", "\u0441": "c",
    "\u0455": "s", "\u0442": "t", "\u0443": "y", "\u0445": "x", "\u0501": "d",
    "\u051b": "q", "\u051d": "w",
    "\u044c": "b", "\u0433": "r", "\u043f": "n", "\u04cf": "l", "\u04af": "y",
    "\u0261": "g",
    # Greek
    "\u03b1": "a", "\u03b2": "b", "\u03b5": "e", "\u03b7": "n", "\u03b9": "i",
    "\u03ba": "k", "\u03bd": "v",
    "\u03bf": "o", "\u03c1": "p", "\u03c4": "t", "\u03c5": "u", "\u03c7": "x",
    "\u03f2": "c", "\u03f3": "j",
    # Latin and digits that read as another letter
    "\u0131": "i", "\u0237": "j", "\u01c0": "l", "0": "o", "1": "l",
    "|": "l",
})
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def fold_name(text: str) -> str:
    """NFKC with case folding (Unicode's NFKC_Casefold, close enough for names)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


@lru_cache(maxsize=65536)  # a catalog lookup compares against every name of the tenant
def name_key(text: str) -> str:
    """What two names are compared by: equal keys are the same name."""
    return fold_name(text.strip()).translate(CONFUSABLES)


def is_control(char: str) -> bool:
    """Control, format (bidi overrides, zero-width) and line/paragraph separators."""
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def escape_control(text: str) -> str:
    """For a terminal: every control character as a visible escape (`\\x1b`, `\\n`,
    `\\u202e`), backslashes doubled so an escape cannot be faked."""
    out: list[str] = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif is_control(char):
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


def one_line(text: str) -> str:
    """For a log line: line breaks and other controls escaped, so nothing starts a line."""
    if text.isprintable():
        return text
    return escape_control(text)


def csv_cell(text: str) -> str:
    """A spreadsheet cell that cannot be read as a formula (OWASP: prefix a quote)."""
    return f"'{text}" if text.startswith(CSV_FORMULA_START) else text
