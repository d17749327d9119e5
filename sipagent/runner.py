"""The agent's feed loop: read events, fold them into the desired state, commit."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from domain.feeds import EventFeed
from domain.status import AgentDirectory, AgentHeartbeat
from sipagent.state import AgentState

log = logging.getLogger(__name__)


class AgentRunner:
    """`after`: called after each step whose events were committed, and on idle steps
    (a distributed agent writes its snapshots there)."""

    def __init__(self, feed: EventFeed, state: AgentState, name: str = "agent",
                 after: Callable[[], object] | None = None) -> None:
        self.feed = feed
        self.state = state
        self.name = name
        self.after = after
        self.batch = 500
        self.behind = False  # the last read was a full batch: more is waiting
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
        items = self.feed.read(limit=self.batch, timeout=timeout)
        self.behind = len(items) >= self.batch
        if not items:
            return 0
        applied = self.state.apply(items)
        self.feed.commit()
        return applied

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.step()
                if self.after is not None:
                    self.after()
                self.failure = ""
            except Exception as error:  # the broker or store may be away; keep trying
                if not self.failure:
                    log.exception("%s: reading events failed; retrying", self.name)
                self.failure = f"{type(error).__name__}: {error}"
                self._stopping.wait(1.0)


class Ticker:
    """Calls `work` every `every` seconds on a thread of its own until stopped; a failure
    is logged once per run of failures and the next tick tries again."""

    def __init__(self, name: str, every: float, work: Callable[[], object]) -> None:
        self.name = name
        self.every = every
        self.work = work
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        failing = False
        while not self._stopping.wait(self.every):
            try:
                self.work()
                failing = False
            except Exception:
                if not failing:
                    log.exception("%s failed; trying again every %g s", self.name, self.every)
                failing = True


class Heartbeat:
    """Announces the agent every `every` seconds: its AgentService address and the tenants
    it holds (a PBX finds its agent this way; doctor finds a silent one). Often enough
    that the control plane calls it silent (9 s by default) well within the consumer
    group's session timeout, and its trunks stop reading `registered` by then."""

    def __init__(self, directory: AgentDirectory, agent_id: str, state: AgentState,
                 every: float = 2.0) -> None:
        self.directory = directory
        self.agent_id = agent_id
        self.state = state
        self.every = every
        self.address = ""
        self.started = datetime.now(UTC)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        self.directory.announce(AgentHeartbeat(
            self.agent_id, self.address, tuple(self.state.tenants()), datetime.now(UTC),
            self.started, partitions=tuple(self.state.partitions)))

    def leave(self) -> None:
        """The last word of a clean stop: the directory shows the agent as left, not
        silent (nothing to alert on)."""
        self.stop()
        try:
            self.directory.announce(AgentHeartbeat(
                self.agent_id, self.address, (), datetime.now(UTC), self.started,
                leaving=True))
        except Exception as error:  # the broker may be away: it will look silent
            log.warning("%s: could not announce leaving: %s", self.agent_id, error)

    def start(self) -> None:
        def run() -> None:
            sent: tuple[list[str], float] | None = None
            while True:
                tenants = self.state.tenants()
                due = sent is None or sent[0] != tenants or (
                    time.monotonic() - sent[1] >= self.every)
                if due:  # on time, and at once when the tenants held change
                    try:
                        self.beat()
                        sent = (tenants, time.monotonic())
                    except Exception as error:  # the broker may be away: next time
                        log.warning("%s: heartbeat not sent: %s", self.agent_id, error)
                        sent = (tenants, time.monotonic())
                if self._stopping.wait(min(1.0, self.every)):
                    return

        self._thread = threading.Thread(target=run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
