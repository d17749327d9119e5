"""A NAT for UDP on loopback, in user space, for the tests of the agent behind NAT.

A real NAT rewrites datagrams on their way to the real destination; on one host the agent
must send to the box instead, so the box has a front port per destination it forwards to
(the provider's Kamailio, the STUN server). Each client address gets one outside socket:
its mapping, the same whichever destination (endpoint-independent, as RFC 4787 asks of a
NAT). What comes back to the outside socket from a destination goes to the client from
that destination's front port; datagrams from anyone else are dropped. `rebind()` drops
every mapping, as a NAT does when a binding times out or the router restarts: the next
datagram leaves from a new outside port."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

Address = tuple[str, int]


class NatBox:
    def __init__(self, targets: list[Address], address: str = "127.0.0.1") -> None:
        self.address = address
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._fronts: dict[Address, socket.socket] = {}
        self._mappings: dict[Address, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        for target in targets:
            front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            front.bind((address, 0))
            self._fronts[target] = front
            self._selector.register(front, selectors.EVENT_READ, ("front", target))
        self._running = True
        self._thread = threading.Thread(target=self._run, name="natbox", daemon=True)
        self._thread.start()

    def front(self, target: Address) -> int:
        """The port to send to for `target`."""
        return int(self._fronts[target].getsockname()[1])

    def mappings(self) -> dict[Address, int]:
        """Client address -> its outside port now."""
        with self._lock:
            return {c: int(s.getsockname()[1]) for c, s in self._mappings.items()}

    def rebind(self) -> None:
        with self._lock:
            for outside in self._mappings.values():
                self._selector.unregister(outside)
                outside.close()
            self._mappings.clear()

    def _outside(self, client: Address) -> socket.socket:
        with self._lock:
            outside = self._mappings.get(client)
            if outside is None:
                outside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                outside.bind((self.address, 0))
                self._mappings[client] = outside
                self._selector.register(outside, selectors.EVENT_READ, ("outside", client))
            return outside

    def _run(self) -> None:
        while self._running:
            for key, _ in self._selector.select(0.5):
                kind, where = key.data
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data, source = sock.recvfrom(65535)
                except OSError:
                    continue
                if kind == "front":
                    self._forward(self._outside(source), data, where)
                elif kind == "outside":
                    front = self._fronts.get((source[0], source[1]))
                    if front is not None:  # only what the destinations send comes in
                        self._forward(front, data, where)

    @staticmethod
    def _forward(sock: socket.socket, data: bytes, to: Address) -> None:
        with contextlib.suppress(OSError):
            sock.sendto(data, to)

    def close(self) -> None:
        self._running = False
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        self.rebind()
        for front in self._fronts.values():
            front.close()
        self._wake_r.close()
        self._wake_w.close()
        self._selector.close()

    def __enter__(self) -> NatBox:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
