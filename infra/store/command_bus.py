"""Group commit: commands that arrive while another batch is being written are committed
together in the next transaction, so concurrent clients share one fsync. A lone command is
run at once in its caller's thread, with no hand-off to another thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from domain.application import Command, Done, TrunkplaneApp

MAX_BATCH = 128


class DeadlineExpiredError(Exception):
    """The caller's deadline passed while the command waited its turn: not run."""


@dataclass
class _Slot:
    command: Command[Any]
    deadline: float | None = None
    done: Done[Any] | None = None
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class CommandBus:
    def __init__(self, app: TrunkplaneApp, max_batch: int = MAX_BATCH,
                 on_saved: Callable[[], None] = lambda: None) -> None:
        self.app = app
        self._on_saved = on_saved
        self._max_batch = max_batch
        self._pending: list[_Slot] = []
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()

    def run(self, command: Command[Any], deadline: float | None = None) -> Done[Any]:
        """Runs the command, unless `deadline` (time.monotonic) passes before its turn."""
        slot = _Slot(command, deadline)
        with self._pending_lock:
            self._pending.append(slot)
        while not slot.finished.is_set():
            with self._write_lock:
                if not slot.finished.is_set():
                    self._write_next_batch()
        if slot.error is not None:
            raise slot.error
        assert slot.done is not None
        return slot.done

    def _write_next_batch(self) -> None:
        with self._pending_lock:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
        now = time.monotonic()
        for slot in [s for s in batch if s.deadline is not None and s.deadline <= now]:
            slot.error = DeadlineExpiredError()
            slot.finished.set()
            batch.remove(slot)
        if not batch:
            return
        try:
            results = self.app.execute_batch([s.command for s in batch])
        except Exception as error:  # a store failure fails every command of the batch
            for slot in batch:
                slot.error = error
                slot.finished.set()
            return
        self._on_saved()
        for slot, done in zip(batch, results, strict=True):
            slot.done = done
            slot.finished.set()
