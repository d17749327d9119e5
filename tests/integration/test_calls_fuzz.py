"""Bad input on both SIP faces: the RFC 4475 torture messages and thousands of mangled
INVITEs never crash the agent or its B2BUA (no 500, which is what an exception in a
handler answers), get 400 where a reply is possible, leave no call behind, and the agent
carries a normal call afterwards."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from sipagent.sip.message import Request
from tests.calls_rig import Rig, wait_for
from tests.conftest import SHARED
from tests.sipua import ThreadedUA

CORPUS = SHARED / "corpus" / "sip-torture-rfc4475"


@pytest.fixture
def rig() -> Iterator[Rig]:
    running = Rig()
    yield running
    running.close()


def corpus() -> list[tuple[str, bytes, str]]:
    if not CORPUS.exists():
        pytest.skip(f"no corpus at {CORPUS}")
    verdicts = dict(line.split("\t")[0::2] for line in
                    (CORPUS / "expected.tsv").read_text().splitlines()[1:])
    return [(name, (CORPUS / name).read_bytes(), verdict)
            for name, verdict in sorted(verdicts.items())]


def mangled(rng: random.Random, invite: bytes) -> bytes:
    """An INVITE with one of: bytes flipped, cut short, a header dropped or doubled, a
    line of junk, a huge or negative Content-Length, a broken Via or Request-URI."""
    lines = invite.split(b"\r\n")
    kind = rng.randrange(8)
    if kind == 0:
        data = bytearray(invite)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 1:
        return invite[:rng.randrange(1, len(invite))]
    head = [line for line in lines[1:] if line and b":" in line]
    if kind == 2:
        victim = rng.choice(head)
        return invite.replace(victim + b"\r\n", b"", 1)
    if kind == 3:
        victim = rng.choice(head)
        return invite.replace(victim, victim + b"\r\n" + victim, 1)
    if kind == 4:
        return invite.replace(b"\r\n", b"\r\n" + bytes(rng.randrange(1, 256) for _ in
                                                        range(rng.randint(1, 40))) + b"\r\n", 1)
    if kind == 5:
        return invite.replace(b"Content-Length: ", rng.choice(
            [b"Content-Length: 99999", b"Content-Length: -1", b"Content-Length: x"]) +
            b"\r\nX-Old: ", 1)
    if kind == 6:
        return invite.replace(b"SIP/2.0/UDP", rng.choice([b"SIP/2.0/", b"SIP/3.0/UDP",
                                                          b"SIP/2.0/UDP ;;"]), 1)
    return invite.replace(b"INVITE sip:", rng.choice([b"INVITE <sip:", b"INVITE  sip:",
                                                     b"INVITE tel:", b"INVITE sip:@"]), 1)


def test_torture_corpus_and_mangled_invites_on_both_faces(rig: Rig) -> None:
    far = ThreadedUA()
    phone = ThreadedUA()
    phone.ua.keep_responses = True
    try:
        trunk = rig.trunk("carrier", peer_addresses=[f"127.0.0.1:{far.port}"])
        rig.wait_live(trunk)
        rig.route("all", [trunk], [{"match": "9.", "prefix": "", "prepend": ""}])
        rng = random.Random(4475)
        good: Request = phone.ua.invite(rig.pbx_address, "2125551234", "201", "x@pbx")
        messages = [data for _, data, _ in corpus()]
        messages += [mangled(rng, good.to_bytes()) for _ in range(1500)]
        for address in (rig.pbx_address, rig.provider_address):
            for start in range(0, len(messages), 50):  # paced: no loss in socket buffers
                for data in messages[start:start + 50]:
                    phone.call_soon(phone.ua.send_raw, data, address)
                time.sleep(0.02)
            _stream(("127.0.0.1", _tcp_port(rig, address)), messages[:60])
        settled(lambda: len(phone.ua.responses))
        wait_for(lambda: not rig.b2bua.calls, 15, "no call left behind")
        codes = {r.status for r in phone.ua.responses}
        assert len(phone.ua.responses) > 1000
        # a mangled INVITE can stay valid (its Call-ID and tags differ each run): from the
        # trunk's address to the provider face, its DID has no inbound route (404), as to
        # the PBX face its number may have none (404, 484); refusals, never a call
        assert set(rig.b2bua.counters.calls) <= {"outbound_refused_484", "outbound_refused_404",
                                                 "inbound_refused_source", "inbound_no_route"}
        assert 500 not in codes, "a handler raised"
        assert 400 in codes
        assert far.ua.received("INVITE") == []  # nothing reached the provider
        assert rig.admission.leases() == 0
        phone.ua.keep_responses = False
        outcome = phone.run(phone.ua.call(rig.pbx_address, "9125551234"))
        assert outcome.code == 200, "the agent still carries calls"
        phone.run(phone.ua.bye(rig.pbx_address, outcome))
        wait_for(lambda: rig.channels(trunk) == (0, 0), 5, "freed")
    finally:
        far.close()
        phone.close()


def settled(count: Callable[[], int], quiet: float = 0.5) -> None:
    """Waits until `count` stops changing for `quiet` seconds."""
    last, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.05)
        if count() != last:
            last, since = count(), time.monotonic()


def _stream(address: tuple[str, int], messages: list[bytes]) -> None:
    """The messages over TCP, the stream framing too. A message whose framing cannot be
    trusted (the corpus's Content-Length -999) makes the agent close the connection, as it
    should: the rest go over a new one (how many were written before the close depends on
    timing)."""
    stream = socket.create_connection(address)
    try:
        for data in messages:
            try:
                stream.sendall(data)
            except (ConnectionResetError, BrokenPipeError):
                stream.close()
                stream = socket.create_connection(address)
                stream.sendall(data)
    finally:
        stream.close()


def _tcp_port(rig: Rig, address: tuple[str, int]) -> int:
    assert rig.b2bua.pbx is not None and rig.engine.transport is not None
    transport = rig.b2bua.pbx.transport if address == rig.pbx_address else \
        rig.engine.transport
    return transport.stream_ports.get("tcp", address[1])
