"""ICMP errors on the agent's UDP socket (IP_RECVERR): a transaction to a closed port fails
at once, and a datagram to anywhere else sent right after is not lost to the pending
error (the kernel fails the next send on that socket, whatever its destination)."""

from __future__ import annotations

import asyncio

import pytest

from sipagent.sip.message import Request
from sipagent.sip.transport import Destination, SipTransport, TransportError, new_tag
from tests.brokers import free_port


class _Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)


def _options(port: int) -> Request:
    return Request(method="OPTIONS", uri=f"sip:127.0.0.1:{port}", headers=[
        ("Max-Forwards", "70"), ("From", f"<sip:t@127.0.0.1>;tag={new_tag()}"),
        ("To", "<sip:x@127.0.0.1>"), ("Call-ID", new_tag()), ("CSeq", "1 OPTIONS")])


def test_closed_port_fails_the_transaction_and_loses_no_other_datagram() -> None:
    async def scenario() -> tuple[str, list[bytes]]:
        loop = asyncio.get_running_loop()
        sink = _Sink()
        listener, _ = await loop.create_datagram_endpoint(lambda: sink,
                                                          local_addr=("127.0.0.1", 0))
        open_port = listener.get_extra_info("sockname")[1]
        transport = SipTransport("127.0.0.1", 0)
        await transport.start()
        closed = Destination("udp", "127.0.0.1", free_port())
        try:
            for n in range(5):
                transport.send_datagram(b"x", closed)
                transport.send_datagram(f"ok{n}".encode(), Destination("udp", "127.0.0.1",
                                                                        open_port))
            with pytest.raises(TransportError) as failed:
                await asyncio.wait_for(transport.request(_options(closed.port), closed), 5)
            await asyncio.sleep(0.1)  # loopback delivery
            return str(failed.value), sink.received
        finally:
            transport.close()
            listener.close()

    reason, received = asyncio.run(scenario())
    assert "port unreachable (ICMP)" in reason
    assert received == [f"ok{n}".encode() for n in range(5)]
