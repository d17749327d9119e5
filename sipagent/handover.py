"""A clean stop of one agent among several: its trunks are handed over, not unregistered.

The agent leaves the consumer group first, so the others take its partitions over; it
stops refreshing its registrations but leaves their bindings at the registrars, and the
new owners' REGISTERs replace them (same +sip.instance and reg-id). Only the trunks that
no other agent has taken over within `wait` seconds (the last agent stopping, or a group
that cannot rebalance) are unREGISTERed, by their own Contact, so a new owner's binding
is never touched. A rolling restart therefore leaves no gap at the registrar."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sipagent.engine import SipAgent

log = logging.getLogger(__name__)

# trunk ids to watch, seconds to wait -> the trunks another agent reported meanwhile
TakenOver = Callable[[set[str], float], set[str]]


def hand_over(sip: SipAgent, taken_over: TakenOver, wait: float) -> tuple[int, int]:
    """Returns (trunks taken over by other agents, trunks unregistered here)."""
    parked = set(sip.park())
    taken: set[str] = set()
    if parked and wait > 0:
        try:
            taken = taken_over(parked, wait) & parked
        except Exception as error:  # the broker may be away: unregister, as before
            log.warning("hand-over: cannot learn which trunks were taken over (%s); "
                        "unregistering all %d", error, len(parked))
    unregistered = sip.unregister_parked(keep=sorted(taken), timeout=30)
    log.info("hand-over: %d trunks taken over by other agents, %d unregistered",
             len(taken), unregistered)
    return len(taken), unregistered
