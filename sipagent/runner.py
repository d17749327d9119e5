"""The agent's feed loop: read events, fold them into the desired state, commit."""

from __future__ import annotations

import logging
import threading

from domain.feeds import EventFeed
from sipagent.state import AgentState

log = logging.getLogger(__name__)


class AgentRunner:
    def __init__(self, feed: EventFeed, state: AgentState, name: str = "agent") -> None:
        self.feed = feed
        self.state = state
        self.name = name
        self.failure = ""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        threadsafe = hasattr(self.feed, "notify")  # the store feed may close while read waits
        if threadsafe:
            self.feed.close()
        if self._thread is not None:
            self._thread.join(timeout=15)
        if not threadsafe:
            self.feed.close()

    def step(self, timeout: float = 0.5) -> int:
        items = self.feed.read(timeout=timeout)
        if not items:
            return 0
        applied = self.state.apply(items)
        self.feed.commit()
        return applied

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.step()
                self.failure = ""
            except Exception as error:  # the broker or store may be away; keep trying
                if not self.failure:
                    log.exception("%s: reading events failed; retrying", self.name)
                self.failure = f"{type(error).__name__}: {error}"
                self._stopping.wait(1.0)
