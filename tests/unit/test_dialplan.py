from __future__ import annotations

import re

import pytest

from domain.dialplan import DialPattern, matches, pattern_regex


@pytest.mark.parametrize(("pattern", "number", "expected"), [
    ("NXXNXXXXXX", "2125551234", True),
    ("NXXNXXXXXX", "1125551234", False),
    ("1XXX", "1001", True),
    ("1XXX", "10011", False),
    ("Z", "0", False),
    ("[1-35]X", "45", False),
    ("[1-35]X", "55", True),
    ("011.", "011", False),
    ("011.", "01144", True),
    ("011!", "011", True),
    ("*XX", "*72", True),
    ("+1NXXNXXXXXX", "+12125551234", True),
])
def test_matching(pattern: str, number: str, expected: bool) -> None:
    assert matches(pattern, number) is expected


@pytest.mark.parametrize(("pattern", "message"), [
    ("9Q", "'Q' at position 2 is not a digit"),
    (".9", "'.' may only stand last (position 1)"),
    ("[5-1]", "range 5-1 runs backwards"),
    ("[12", "'[' at position 1 is never closed"),
    ("[]", "must hold digits or ranges"),
    ("X" * 65, "longer than 64 characters"),
])
def test_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        pattern_regex(pattern)


def test_prefix_is_stripped_and_prepend_added() -> None:
    pattern = DialPattern.parse("1+9|NXXNXXXXXX").validated()
    assert (pattern.prepend, pattern.prefix, pattern.match) == ("1", "9", "NXXNXXXXXX")
    assert pattern.rewrite("92125551234") == "12125551234"
    assert pattern.rewrite("2125551234") is None
    assert str(pattern) == "1+9|NXXNXXXXXX"


def test_text_forms() -> None:
    assert DialPattern.parse("NXXXXXX") == DialPattern("NXXXXXX")
    assert DialPattern.parse("9|NXXXXXX") == DialPattern("NXXXXXX", prefix="9")
    assert str(DialPattern("011.", prepend="00")) == "00+|011."


def test_bad_prepend_and_prefix() -> None:
    with pytest.raises(ValueError, match="prepend 'a1' may hold only digits"):
        DialPattern("X.", prepend="a1").validated()
    with pytest.raises(ValueError, match=r"prefix '9\.' may not hold"):
        DialPattern("X.", prefix="9.").validated()
