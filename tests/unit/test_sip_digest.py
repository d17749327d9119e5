"""Digest answers against the worked examples of RFC 7616 section 3.9.1, and nc counting."""

from __future__ import annotations

import pytest

from sipagent.sip.digest import DigestClient, parse_challenge
from sipagent.sip.message import SipParseError

CHALLENGE = ('Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={}, '
             'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
             'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(("algorithm", "expected"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_examples(algorithm: str, expected: str) -> None:
    challenge = parse_challenge(CHALLENGE.format(algorithm))
    assert challenge.qop == ("auth", "auth-int") and challenge.algorithm == algorithm
    answer = DigestClient("Mufasa", "Circle of Life").answer(
        challenge, "GET", "/dir/index.html", cnonce=CNONCE)
    assert f'response="{expected}"' in answer
    assert "qop=auth, nc=00000001" in answer
    assert 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"' in answer


def test_nc_counts_per_nonce_and_restarts_on_a_new_one() -> None:
    client = DigestClient("1001", "secret")
    first = parse_challenge('Digest realm="r", nonce="n1", qop="auth"')
    assert "nc=00000001" in client.answer(first, "REGISTER", "sip:example.com")
    assert "nc=00000002" in client.answer(first, "REGISTER", "sip:example.com")
    stale = parse_challenge('Digest realm="r", nonce="n2", qop="auth", stale=true', proxy=True)
    assert stale.stale and stale.header == "Proxy-Authorization"
    assert "nc=00000001" in client.answer(stale, "REGISTER", "sip:example.com")


def test_rfc2069_form_without_qop() -> None:
    # RFC 2617 3.5's values, answered without qop (the response covers nonce and HA2 only)
    challenge = parse_challenge('Digest realm="testrealm@host.com", '
                                'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"')
    answer = DigestClient("Mufasa", "Circle Of Life").answer(challenge, "GET", "/dir/index.html")
    assert 'response="670fd8c2df070c60b045671b8b24ff02"' in answer
    assert "qop" not in answer and "nc=" not in answer


@pytest.mark.parametrize("value", ['Basic realm="x"', 'Digest nonce="n"', 'Digest realm="r"'])
def test_bad_challenges_are_parse_errors(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_challenge(value)


def test_unknown_algorithms_are_refused_not_guessed() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n", algorithm=SHA-512-256')
    with pytest.raises(SipParseError, match="SHA-512-256"):
        DigestClient("u", "p").answer(challenge, "REGISTER", "sip:x")
