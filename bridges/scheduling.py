"""Scheduling priority for the live path, where the system allows it.

A DAW runs its MIDI thread ahead of everything else; Kantor's live harmoniser does the
same, in ``kantor serve``'s live process and in ``kantor live`` alike: the process at a
raised priority (nice), and the worker thread that answers each note under real-time
scheduling (SCHED_FIFO) below JACK's own threads. Without the privilege (not root, no
rtprio limit) each step is refused quietly and the caller is told what it got.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

LIVE_NICE = -10  # the live process's nice value, where allowed
LIVE_RT_PRIORITY = 10  # SCHED_FIFO priority of the live worker; JACK's threads use ~70-95


def raise_priority() -> str:
    """Raise this thread's nice value (threads started afterwards inherit it); call it
    before starting the live worker. Returns "nice -10", or "normal" if refused."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, LIVE_NICE)
    except (OSError, AttributeError):  # no privileges, or not on this platform
        log.debug("could not raise the live process's priority")
        return "normal"
    return f"nice {LIVE_NICE}"


def real_time(thread_id: int) -> str | None:
    """Put the live worker thread (native id) under SCHED_FIFO where allowed (root, or an
    rtprio limit), as a DAW does its MIDI thread: a waiting note is then never queued
    behind ordinary threads. The worker sleeps on its queue between events, so it cannot
    starve the machine (and Linux caps real-time threads at 95% of a CPU). A description,
    or None if refused."""
    try:
        os.sched_setscheduler(thread_id, os.SCHED_FIFO, os.sched_param(LIVE_RT_PRIORITY))
    except (OSError, AttributeError):
        log.debug("real-time scheduling refused: the live worker runs at normal priority")
        return None
    return f"SCHED_FIFO {LIVE_RT_PRIORITY}"
