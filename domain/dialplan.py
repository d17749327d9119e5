"""Dial patterns in the FreePBX/Asterisk form: X (0-9), Z (1-9), N (2-9), [1-5] or [135]
(a set), '.' (one or more of anything, last), '!' (zero or more, last); digits, '*', '#'
and '+' stand for themselves."""

from __future__ import annotations

import re
from dataclasses import dataclass

LITERALS = set("0123456789*#+")
CLASSES = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}
MAX_PATTERN = 64


def pattern_regex(pattern: str) -> str:
    """Regex source for a pattern; ValueError naming the offending position otherwise."""
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"'{pattern}' is longer than {MAX_PATTERN} characters")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i].upper()
        if char in CLASSES:
            out.append(CLASSES[char])
        elif char in LITERALS:
            out.append(re.escape(char))
        elif char in ".!":
            if i != len(pattern) - 1:
                raise ValueError(f"'{pattern}': '{char}' may only stand last (position {i + 1})")
            out.append(".+" if char == "." else ".*")
        elif char == "[":
            end = pattern.find("]", i)
            if end == -1:
                raise ValueError(f"'{pattern}': '[' at position {i + 1} is never closed")
            out.append(_char_set(pattern, pattern[i + 1 : end], i))
            i = end
        else:
            raise ValueError(
                f"'{pattern}': '{pattern[i]}' at position {i + 1} is not a digit, *, #, +, "
                "X, Z, N, [set], '.' or '!'"
            )
        i += 1
    return "".join(out)


def _char_set(pattern: str, body: str, at: int) -> str:
    if not body or not re.fullmatch(r"([0-9](-[0-9])?)+", body):
        raise ValueError(
            f"'{pattern}': set at position {at + 1} must hold digits or ranges like [1-5] or [135]"
        )
    for low, high in re.findall(r"([0-9])-([0-9])", body):
        if low > high:
            raise ValueError(f"'{pattern}': range {low}-{high} runs backwards")
    return f"[{body}]"


def check_pattern(pattern: str) -> str:
    text = pattern.strip()
    if not text:
        raise ValueError("a pattern must not be empty")
    pattern_regex(text)
    return text


def check_digits(text: str, what: str) -> str:
    bad = [c for c in text if c not in LITERALS]
    if bad:
        raise ValueError(f"{what} '{text}' may hold only digits, '*', '#' and '+'")
    if len(text) > 32:
        raise ValueError(f"{what} '{text}' is longer than 32 characters")
    return text


def matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern_regex(pattern), text) is not None


@dataclass(frozen=True)
class DialPattern:
    """A number matches when it starts with `prefix` and the rest matches `match`;
    the prefix is stripped and `prepend` is put in front."""

    match: str
    prefix: str = ""
    prepend: str = ""

    @classmethod
    def parse(cls, text: str) -> DialPattern:
        """FreePBX text form: `prepend+prefix|match` (prepend and prefix optional)."""
        head, sep, match = text.partition("|")
        if not sep:
            head, match = "", text
        prepend, plus, prefix = head.partition("+")
        if not plus:
            prepend, prefix = "", head
        return cls(match=match, prefix=prefix, prepend=prepend)

    def __str__(self) -> str:
        head = f"{self.prepend}+{self.prefix}" if self.prepend else self.prefix
        return f"{head}|{self.match}" if head else self.match

    def validated(self) -> DialPattern:
        return DialPattern(
            match=check_pattern(self.match),
            prefix=_check_prefix(self.prefix),
            prepend=check_digits(self.prepend, "prepend"),
        )

    def rewrite(self, number: str) -> str | None:
        """The number as it must be sent, or None when this pattern does not match."""
        found = re.fullmatch(
            f"({pattern_regex(self.prefix) if self.prefix else ''})({pattern_regex(self.match)})",
            number,
        )
        return None if found is None else self.prepend + found.group(2)


def _check_prefix(prefix: str) -> str:
    if prefix and any(c in ".!" for c in prefix):
        raise ValueError(f"prefix '{prefix}' may not hold '.' or '!'")
    if prefix:
        pattern_regex(prefix)
    return prefix
