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


class OrdinaryWhileAhead:
    """Takes a real-time live worker down to ordinary scheduling while it works ahead.

    Working ahead (see LiveHarmonizer.speculate) can keep the worker busy for tens of
    milliseconds. Under SCHED_FIFO that would run before a JACK server that is not itself
    real-time and make it miss cycles (MIDI in a late cycle may be lost). So, unless JACK
    runs real-time above the worker, the worker works ahead under SCHED_OTHER (its nice
    value stays) and returns to SCHED_FIFO before it handles the next message. Not
    SCHED_IDLE: the JACK callback that hands MIDI to Python waits for the GIL, and an
    idle-class holder can be kept off the CPU for long.
    """

    def __init__(self) -> None:
        self._saved: int | None = None  # the real-time priority to return to

    def lower(self) -> None:
        """Ordinary scheduling from now on (a no-op if lowered or not real-time)."""
        if self._saved is not None:
            return
        try:
            if os.sched_getscheduler(0) != os.SCHED_FIFO:
                return
            priority = os.sched_getparam(0).sched_priority
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            self._saved = priority
        except (OSError, AttributeError):
            self._saved = None

    def restore(self) -> None:
        """Back to SCHED_FIFO at the saved priority (a no-op if not lowered)."""
        if self._saved is None:
            return
        priority, self._saved = self._saved, None
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        except OSError:  # the privilege went away: carry on as an ordinary thread
            log.warning("could not return the live worker to real-time scheduling")


def keep_to_one_core(cpu: int | None = None) -> str | None:
    """Keep every thread of this process (and those it starts later) on one CPU core:
    ``cpu``, or by default the last core it may use. The live worker then wakes on the
    core where the note's MIDI thread ran and its own data still sits, instead of an idle
    core woken from the other side (measured on the 2-core test VM under JACK: a table hit
    answered in 0.16 ms at p50 instead of 0.28, and answering ahead 1.6x cheaper per
    answer). Returns "CPU n", or None where there is one core or it is refused."""
    cpu = live_core() if cpu is None else cpu
    if cpu is None:
        return None
    # this thread, and those already started (rtmidi's, JACK's client thread, the worker)
    tasks = "/proc/self/task"
    threads = [0, *(int(name) for name in (os.listdir(tasks) if os.path.isdir(tasks) else []))]
    try:
        for thread in threads:
            os.sched_setaffinity(thread, {cpu})
    except OSError as error:  # no such core, or not allowed
        log.warning("could not keep the live process to CPU %s: %s", cpu, error)
        return None
    return f"CPU {cpu}"


def live_core() -> int | None:
    """The core the live process keeps to by default: the last this process may use;
    None with a single core (nothing to choose) or where affinity is not supported."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (OSError, AttributeError):  # not on this platform
        return None
    return allowed[-1] if len(allowed) > 1 else None


def core_choice(value: str | int) -> str | int:
    """A checked ``--cpu`` / ``[midi] cpu`` value: "last" (the default: the last core
    this process may use), "any" (the operating system chooses) or a core number."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"cpu takes a core number >= 0, 'last' or 'any', not {value}")
        return value
    text = str(value).strip().lower()
    if text in ("last", "any"):
        return text
    if text.isdigit():
        return int(text)
    raise ValueError(f"cpu takes a core number, 'last' or 'any', not {value!r}")


def apply_core_choice(choice: str | int) -> str | None:
    """Keep the live process to the core ``choice`` names (see :func:`core_choice`);
    "CPU n", or None when left to the operating system or refused."""
    if choice == "any":
        return None
    return keep_to_one_core(None if choice == "last" else int(choice))
