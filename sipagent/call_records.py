"""The B2BUA's CallRecordSink: `record` only queues (it runs on the SIP loop), and a thread
of its own writes the queue in batches to where the records are kept (the control plane's
store in one process, the calls topic in the distributed mode). Records that could not be
written stay queued for the next flush, up to a bound."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from domain.calls import CallRecord
from sipagent.runner import Ticker

log = logging.getLogger(__name__)
Writer = Callable[[Sequence[CallRecord]], None]
MAX_QUEUED = 100_000  # about 100 MB of records: beyond it the oldest are dropped, counted
BATCH = 500


class QueuedCallSink:
    def __init__(self, write: Writer, every: float = 0.2) -> None:
        self._write = write
        self._queue: deque[CallRecord] = deque()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._ticker = Ticker("call-records", every, self.flush)
        self.written = 0
        self.dropped = 0

    def start(self) -> QueuedCallSink:
        self._ticker.start()
        return self

    def record(self, record: CallRecord) -> None:
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(record)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def flush(self) -> int:
        """Writes what is queued, a batch at a time; raises (keeping the batch) when the
        writer fails."""
        written = 0
        with self._flushing:
            while True:
                with self._lock:
                    batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
                if not batch:
                    return written
                self._write(batch)
                with self._lock:
                    for _ in batch:
                        self._queue.popleft()
                written += len(batch)
                self.written += len(batch)

    def stop(self) -> None:
        """Stops the thread and writes what is left (logged when that fails)."""
        self._ticker.stop()
        try:
            self.flush()
        except Exception as error:  # the store or broker is away at shutdown
            log.warning("%d call records not written at shutdown: %s", self.pending, error)
