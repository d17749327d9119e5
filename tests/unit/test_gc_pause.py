"""The collector pause around batches: nested and across threads it ends when the last
one leaves, and never turns on a collector someone else turned off."""

from __future__ import annotations

import gc
import threading

from infra.messaging.codec import gc_paused


def test_the_last_one_out_turns_the_collector_back_on() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        inner_done = threading.Event()

        def other() -> None:
            with gc_paused():
                assert not gc.isenabled()
            inner_done.set()

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert inner_done.is_set() and not gc.isenabled()  # still ours
    assert gc.isenabled()


def test_a_collector_turned_off_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
