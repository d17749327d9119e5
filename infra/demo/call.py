"""The tour's PBX: places one call on the agent's PBX face, as a PBX would, and prints
every answer. INVITE (with an SDP offer of PCMU, PCMA and telephone-event), ACK, the call
held a moment, BYE. It sends signalling only: no media.

    python3 infra/demo/call.py NUMBER [--pbx-face 127.0.0.1:5080] [--from 1001] [--hold 2]

Exit 0 when the call was answered and hung up cleanly, 1 otherwise."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sipagent.sip.message import Request, Response, SipParseError, parse

T1 = 0.5


def _tag() -> str:
    return os.urandom(5).hex()


class Phone:
    def __init__(self, face: tuple[str, int], caller: str) -> None:
        self.face = face
        self.caller = caller
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.call_id = f"{_tag()}{_tag()}@tour-pbx"
        self.from_ = f"<sip:{caller}@127.0.0.1>;tag={_tag()}"

    def via(self) -> str:
        return f"SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{_tag()};rport"

    def send(self, request: Request) -> None:
        self.sock.sendto(request.to_bytes(), self.face)

    def receive(self, timeout: float) -> Response | None:
        self.sock.settimeout(max(0.01, timeout))
        try:
            data, _ = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        try:
            message = parse(data)
        except SipParseError:
            return None
        return message if isinstance(message, Response) else None

    def transaction(self, request: Request, wait: float, invite: bool = False,
                    show: bool = True) -> Response | None:
        """Sends with retransmissions until a final answer (printing each answer)."""
        self.send(request)
        deadline, interval, heard = time.monotonic() + wait, T1, False
        while time.monotonic() < deadline:
            response = self.receive(min(interval, deadline - time.monotonic()))
            if response is None:
                if not (invite and heard):
                    self.send(request)
                    interval = min(interval * 2, 4.0)
                continue
            if response.get("call-id") != self.call_id or \
                    response.cseq()[1] != request.method:
                continue
            if show:
                print(f"  {response.status} {response.reason}")
            heard = True
            if response.status >= 200:
                return response
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("number")
    parser.add_argument("--pbx-face", default="127.0.0.1:5080")
    parser.add_argument("--from", dest="caller", default="1001")
    parser.add_argument("--hold", type=float, default=2.0)
    args = parser.parse_args()
    host, _, port = args.pbx_face.rpartition(":")
    phone = Phone((host, int(port)), args.caller)
    target = f"{host}:{port}"
    offer = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=tour\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             f"m=audio {phone.port + 2} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
             "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
             "a=fmtp:101 0-16\r\na=sendrecv\r\n").encode()
    invite = Request(method="INVITE", uri=f"sip:{args.number}@{target}", headers=[
        ("Via", phone.via()), ("Max-Forwards", "70"), ("From", phone.from_),
        ("To", f"<sip:{args.number}@{target}>"), ("Call-ID", phone.call_id),
        ("CSeq", "1 INVITE"), ("Contact", f"<sip:{args.caller}@127.0.0.1:{phone.port}>"),
        ("Content-Type", "application/sdp")], body=offer)
    print(f"INVITE sip:{args.number}@{target} from {args.caller}")
    final = phone.transaction(invite, 40.0, invite=True)
    if final is None:
        print("  no final answer")
        return 1
    contact = final.get("contact")
    remote = contact[contact.find("<") + 1:contact.find(">")] if "<" in contact else \
        invite.uri
    ack = Request(method="ACK", uri=remote if final.status < 300 else invite.uri, headers=[
        ("Via", phone.via() if final.status < 300 else invite.get("via")),
        ("Max-Forwards", "70"), ("From", phone.from_), ("To", final.get("to")),
        ("Call-ID", phone.call_id), ("CSeq", "1 ACK")])
    phone.send(ack)
    if final.status >= 300:
        return 1
    print(f"  answered; held {args.hold:g} s (the media would flow between the PBX and the "
          "far end, not through the agent)")
    time.sleep(args.hold)
    bye = Request(method="BYE", uri=remote, headers=[
        ("Via", phone.via()), ("Max-Forwards", "70"), ("From", phone.from_),
        ("To", final.get("to")), ("Call-ID", phone.call_id), ("CSeq", "2 BYE")])
    print("BYE")
    done = phone.transaction(bye, 10.0)
    return 0 if done is not None and done.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
