"""A client transaction cancelled in the very loop turn its answer arrives ends cancelled.
Python 3.11's asyncio.wait_for returned the answer instead (the cancellation lost): a
trunk's worker stopped for a password change while its REGISTER was answered kept running
with the old password, and the new worker, waiting for it to stop, never started."""

from __future__ import annotations

import asyncio
import socket

from sipagent.sip.message import Request, Response, parse
from sipagent.sip.transport import Destination, SipTransport


def _register() -> Request:
    return Request(method="REGISTER", uri="sip:127.0.0.1", headers=[
        ("Max-Forwards", "70"), ("From", "<sip:1001@127.0.0.1>;tag=a"),
        ("To", "<sip:1001@127.0.0.1>"), ("Call-ID", "cancel@test"), ("CSeq", "1 REGISTER"),
        ("Contact", "<sip:1001@127.0.0.1:5999>"), ("Expires", "60")])


async def _answered_as_cancelled(status: int) -> asyncio.Task[Response]:
    transport = SipTransport(t1=0.5)
    await transport.start()
    registrar = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    registrar.bind(("127.0.0.1", 0))
    registrar.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        where = Destination("udp", "127.0.0.1", registrar.getsockname()[1])
        task = asyncio.ensure_future(transport.request(_register(), where, 5.0))
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(registrar, 65536), 5)
        request = parse(data)
        assert isinstance(request, Request)
        answer = Response(status=status, reason="whatever", headers=[
            (n, v) for n, v in request.headers if n.lower() in ("via", "from", "to",
                                                               "call-id", "cseq")])
        transport.received(answer.to_bytes(), where, None)  # the answer, and in the same
        task.cancel()  # turn the worker is stopped
        await asyncio.gather(task, return_exceptions=True)
        return task
    finally:
        registrar.close()
        transport.close()


def test_a_transaction_cancelled_as_its_answer_arrives_is_cancelled() -> None:
    for status in (200, 401):
        task = asyncio.run(_answered_as_cancelled(status))
        assert task.cancelled(), f"{status}: the cancellation was lost"
