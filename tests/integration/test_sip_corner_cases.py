"""What Kamailio will not produce, from a scripted registrar on a loopback UDP port: 423
with Min-Expires, 503 with Retry-After, 407, stale nonces, a repeated 401, a shorter
grant; and the agent's own server side (OPTIONS, malformed requests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from domain.status import TrunkState
from sipagent.engine import SipAgent
from sipagent.sip.message import Request, Response, parse
from sipagent.sip.transport import response_to
from tests.integration.test_sip_agent import PASSWORD, fast
from tests.status_recorder import Recorder

Script = Callable[[Request, int], Response]  # (request, how many came before) -> response


@dataclass
class Seen:
    at: float
    request: Request


class ScriptedRegistrar:
    """Answers each REGISTER with whatever the script says."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                data, source = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            request = parse(data)
            assert isinstance(request, Request)
            before = len(self.seen)
            self.seen.append(Seen(time.monotonic(), request))
            self.sock.sendto(self.script(request, before).to_bytes(), source)

    def wait(self, count: int, timeout: float = 15.0) -> list[Seen]:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            assert time.monotonic() < deadline, [s.request.get("cseq") for s in self.seen]
            time.sleep(0.02)
        return self.seen

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2)
        self.sock.close()


def ok(request: Request, expires: int | None = None) -> Response:
    reply = response_to(request, 200, "OK")
    granted = expires if expires is not None else int(request.get("expires") or 3600)
    reply.add("Contact", f"{request.get('contact')};expires={granted}")
    return reply


def challenge(request: Request, nonce: str, status: int = 401, stale: bool = False) -> Response:
    reply = response_to(request, status, "Unauthorized" if status == 401 else
                        "Proxy Authentication Required")
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    reply.add(header, f'Digest realm="127.0.0.1", nonce="{nonce}", qop="auth", algorithm=MD5'
              + (", stale=true" if stale else ""))
    return reply


@pytest.fixture
def run() -> Iterator[Callable[[Script], tuple[ScriptedRegistrar, Recorder]]]:
    made: list[tuple[ScriptedRegistrar, SipAgent]] = []

    def start(script: Script) -> tuple[ScriptedRegistrar, Recorder]:
        registrar = ScriptedRegistrar(script)
        recorder = Recorder()
        engine = SipAgent(fast(), recorder)
        engine.start()
        engine.update("acme", "t1", {
            "type": "register", "host": f"127.0.0.1:{registrar.port}", "transport": "udp",
            "username": "1001", "password": PASSWORD, "enabled": True,
            # the script answers REGISTERs, and the tests time them: no OPTIONS between
            "timers": {"qualify": False}})
        made.append((registrar, engine))
        return registrar, recorder

    yield start
    for registrar, engine in made:
        engine.stop(timeout=3)
        registrar.close()


def test_423_retries_at_once_with_min_expires(run: Callable[..., Any]) -> None:
    def script(request: Request, before: int) -> Response:
        if int(request.get("expires")) < 7200:
            reply = response_to(request, 423, "Interval Too Brief")
            reply.add("Min-Expires", "7200")
            return reply
        return ok(request)

    registrar, recorder = run(script)
    recorder.wait("t1", lambda o: o.state == TrunkState.REGISTERED)
    first, second = registrar.wait(2)[:2]
    assert (first.request.get("expires"), second.request.get("expires")) == ("3600", "7200")
    assert second.at - first.at < 0.5  # at once, not after a back-off


def test_503_with_retry_after_waits_exactly_that_long(run: Callable[..., Any]) -> None:
    def script(request: Request, before: int) -> Response:
        if before == 0:
            reply = response_to(request, 503, "Service Unavailable")
            reply.add("Retry-After", "2")
            return reply
        return ok(request)

    registrar, recorder = run(script)
    failed = recorder.wait("t1", lambda o: o.state == TrunkState.FAILED)
    assert (failed.sip_code, failed.reason) == (503, "Service Unavailable")
    recorder.wait("t1", lambda o: o.state == TrunkState.REGISTERED)
    first, second = registrar.wait(2)[:2]
    assert 1.9 <= second.at - first.at <= 2.6


def test_407_is_answered_in_proxy_authorization_with_a_fresh_branch(
        run: Callable[..., Any]) -> None:
    def script(request: Request, before: int) -> Response:
        if not request.get("proxy-authorization"):
            return challenge(request, "n407", status=407)
        return ok(request)

    registrar, recorder = run(script)
    recorder.wait("t1", lambda o: o.state == TrunkState.REGISTERED)
    first, second = registrar.wait(2)[:2]
    answer = second.request.get("proxy-authorization")
    assert answer.startswith('Digest username="1001", realm="127.0.0.1", nonce="n407"')
    assert "qop=auth, nc=00000001" in answer
    branches = {s.request.get("via").split("branch=")[1].split(";")[0] for s in (first, second)}
    assert len(branches) == 2
    assert first.request.get("call-id") == second.request.get("call-id")
    assert (first.request.cseq()[0] + 1, "REGISTER") == second.request.cseq()


def test_a_stale_nonce_is_answered_once_more_a_refusal_never(
        run: Callable[..., Any]) -> None:
    def script(request: Request, before: int) -> Response:
        if before == 0:
            return challenge(request, "old")
        if before == 1:
            return challenge(request, "new", stale=True)  # credentials fine, nonce expired
        if before == 2:
            assert 'nonce="new"' in request.get("authorization")
            return ok(request, expires=6)
        return challenge(request, "again")  # from the refresh on: always refused

    registrar, recorder = run(script)
    registered = recorder.wait("t1", lambda o: o.state == TrunkState.REGISTERED)
    assert registered.contacts[0].expires_at is not None
    refused = recorder.wait("t1", lambda o: o.state == TrunkState.AUTH_FAILED, timeout=10)
    assert refused.sip_code == 401
    seen = registrar.wait(5)
    # the refresh came halfway through the 6 s grant, and its challenge was answered once
    assert 2.5 <= seen[3].at - seen[2].at <= 3.6
    assert not seen[3].request.get("authorization") or 'nonce="new"' in seen[3].request.get(
        "authorization")
    assert 'nonce="again"' in seen[4].request.get("authorization")
    time.sleep(0.2)
    later = [s for s in registrar.seen[5:] if s.at - seen[4].at < 0.1]
    assert later == []  # no loop on the refusal


def test_the_agent_answers_options_and_malformed_requests(run: Callable[..., Any]) -> None:
    registrar, recorder = run(lambda request, before: ok(request))
    recorder.wait("t1", lambda o: o.state == TrunkState.REGISTERED)
    contact = registrar.seen[0].request.get("contact")
    port = int(contact.split(":")[2].split(";")[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(2)
        probe.sendto(b"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\n"
                     b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprobe1\r\n"
                     b"From: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\n"
                     b"Call-ID: probe1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                     b"Content-Length: 0\r\n\r\n", ("127.0.0.1", port))
        reply = parse(probe.recvfrom(65536)[0])
        assert isinstance(reply, Response) and reply.status == 200
        assert ";tag=" in reply.get("to") and reply.get("call-id") == "probe1"
        probe.sendto(b"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\n"
                     b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprobe2\r\n"
                     b"From: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\n"
                     b"Call-ID: probe2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
                     b"User-Agent: a probe that says who it is\r\nContent-Length: 0\r\n\r\n",
                     ("127.0.0.1", port))
        bad = parse(probe.recvfrom(65536)[0])
        assert isinstance(bad, Response) and bad.status == 400
        assert "CSeq method INVITE differs" in bad.reason
        # Without From and To a reply could not be matched: none is sent (issue 20).
        probe.sendto(b"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\n"
                     b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprobe3\r\n"
                     b"Call-ID: probe3\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
                     ("127.0.0.1", port))
        probe.settimeout(0.5)
        with pytest.raises(TimeoutError):
            probe.recvfrom(65536)


def test_nat_settings_put_the_external_ip_in_the_contact() -> None:
    registrar = ScriptedRegistrar(lambda request, before: ok(request))
    recorder = Recorder()
    engine = SipAgent(fast(), recorder)
    engine.start()
    try:
        engine.update("acme", "t1", {
            "type": "register", "host": f"127.0.0.1:{registrar.port}", "transport": "udp",
            "username": "1001", "password": PASSWORD, "enabled": True,
            "nat": {"enabled": True, "external_ip": "198.51.100.7", "local_networks": [],
                    "stun_server": ""}})
        recorder.wait("t1", lambda o: o.state == TrunkState.REGISTERED)
        contact = registrar.seen[0].request.get("contact")
        assert contact.startswith("<sip:1001@198.51.100.7:")
    finally:
        engine.stop(timeout=3)
        registrar.close()
