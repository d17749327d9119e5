"""The SIP parser against the RFC 4475 torture messages, and framing on streams."""

from __future__ import annotations

import pytest

from sipagent.sip.message import Request, Response, SipParseError, frame_length, parse
from tests.conftest import SHARED

CORPUS = SHARED / "corpus" / "sip-torture-rfc4475"


def cases() -> list[tuple[str, str]]:
    if not (CORPUS / "expected.tsv").exists():
        return []
    rows = (CORPUS / "expected.tsv").read_text().splitlines()[1:]
    return [(row.split("\t")[0], row.split("\t")[2]) for row in rows]


@pytest.mark.skipif(not cases(), reason=f"the RFC 4475 corpus is not at {CORPUS} "
                                        "(../shared beside the checkout)")
@pytest.mark.parametrize(("name", "verdict"), cases() or [("none", "none")])
def test_rfc4475_torture_messages(name: str, verdict: str) -> None:
    data = (CORPUS / name).read_bytes()
    if verdict == "parse":
        message = parse(data)
        assert isinstance(message, Request | Response)
    else:
        with pytest.raises(SipParseError):
            parse(data)


def test_the_corpus_is_complete() -> None:
    if not cases():
        pytest.skip(f"the RFC 4475 corpus is not at {CORPUS}")
    assert len(cases()) == 49
    assert {v for _, v in cases()} == {"parse", "reject"}


def test_folding_compact_forms_and_multiple_values() -> None:
    message = parse(
        b"REGISTER sip:example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1,\r\n"
        b"  SIP/2.0/TCP 127.0.0.2;branch=z9hG4bK2\r\n"
        b"f: <sip:1001@example.com>;tag=a\r\nt: <sip:1001@example.com>\r\n"
        b"i: abc\r\nCSEQ: 2 REGISTER\r\nm: <sip:1001@127.0.0.1:5062>;expires=60\r\n"
        b"l: 4\r\n\r\nbodyEXTRA")
    assert isinstance(message, Request)
    assert message.all("Via") == ["SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1",
                                  "SIP/2.0/TCP 127.0.0.2;branch=z9hG4bK2"]
    assert message.get("call-id") == "abc" and message.cseq() == (2, "REGISTER")
    assert message.body == b"body"  # a datagram's bytes past Content-Length are dropped


def test_serialise_then_parse_gives_the_same_message() -> None:
    request = Request(method="OPTIONS", uri="sip:127.0.0.1:5070", headers=[
        ("Via", "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKx;rport"),
        ("From", '"Trunk \\"A\\"" <sip:a@example.com>;tag=1'), ("To", "<sip:127.0.0.1>"),
        ("Call-ID", "c1"), ("CSeq", "1 OPTIONS"), ("Max-Forwards", "70")], body=b"")
    again = parse(request.to_bytes())
    assert isinstance(again, Request)
    assert (again.method, again.uri, again.headers[:6]) == (
        request.method, request.uri, request.headers)
    assert again.get("content-length") == "0"


@pytest.mark.parametrize("data", [
    b"", b"\x00\xff" * 100, b"INVITE\r\n\r\n", b"SIP/2.0 20 OK\r\n\r\n",
    b"OPTIONS sip:a SIP/2.0\r\n continuation\r\n\r\n",
    b"OPTIONS sip:a SIP/2.0\r\nNo colon here\r\n\r\n",
    b"OPTIONS sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n",
    b"OPTIONS sip:a SIP/2.0\r\nCSeq: 1 OPTIONS\r\nVia: nonsense\r\n\r\n",
    b"OPTIONS sip:a SIP/2.0\r\nTo: <sip:a>;=x\r\n\r\n",
    b"X" * 70000,
])
def test_garbage_is_a_parse_error_never_a_crash(data: bytes) -> None:
    with pytest.raises(SipParseError):
        parse(data)


def test_stream_framing_waits_for_the_whole_body() -> None:
    one = b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\nContent-Length: 3\r\n\r\nabc"
    assert frame_length(b"\r\n\r\n" + one[:20]) is None
    assert frame_length(one[:-1]) is None
    assert frame_length(one + one) == len(one)
    assert frame_length(b"\r\n" + one) == len(one) + 2
    with pytest.raises(SipParseError):
        frame_length(b"SIP/2.0 200 OK\r\nl: -1\r\n\r\n")
