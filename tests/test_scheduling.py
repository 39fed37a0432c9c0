"""The live process keeps to one core: every thread, those already running included."""

import contextlib
import os
import threading

import pytest

from kantor.bridges.scheduling import apply_core_choice, core_choice, keep_to_one_core


def thread_ids() -> list[int]:
    return [int(name) for name in os.listdir("/proc/self/task")]


@pytest.fixture
def free_afterwards():
    """Give every thread of the test process its cores back (the suite must not run on
    one core because of this test)."""
    allowed = os.sched_getaffinity(0)
    yield sorted(allowed)
    for thread in thread_ids():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(thread, allowed)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: nothing to choose")
def test_every_thread_keeps_to_the_last_core(free_afterwards):
    started, stop = threading.Event(), threading.Event()

    def waiting():
        started.set()
        stop.wait(10)

    thread = threading.Thread(target=waiting)
    thread.start()
    started.wait(5)
    try:
        assert keep_to_one_core() == f"CPU {free_afterwards[-1]}"
        # the thread started before the call is kept there too, as is any started after
        assert os.sched_getaffinity(thread.native_id) == {free_afterwards[-1]}
        assert os.sched_getaffinity(0) == {free_afterwards[-1]}
        later = threading.Thread(target=lambda: None)
        later.start()
        assert all(os.sched_getaffinity(t) == {free_afterwards[-1]} for t in thread_ids())
        later.join()
    finally:
        stop.set()
        thread.join()


def test_a_chosen_core_and_any(free_afterwards):
    first = free_afterwards[0]
    assert apply_core_choice(first) == f"CPU {first}"
    assert os.sched_getaffinity(0) == {first}
    assert apply_core_choice("any") is None  # left as it is: the system chooses


def test_a_core_that_is_not_there_is_refused_with_a_warning(free_afterwards, caplog):
    assert keep_to_one_core(4096) is None
    assert "could not keep the live process to CPU 4096" in caplog.text
    assert os.sched_getaffinity(0) == set(free_afterwards)  # nothing changed


@pytest.mark.parametrize("value, expected", [("last", "last"), ("ANY", "any"), ("1", 1),
                                             (0, 0)])
def test_core_choices(value, expected):
    assert core_choice(value) == expected


@pytest.mark.parametrize("value", ["first", "-1", -2, "1.5", True])
def test_bad_core_choices(value):
    with pytest.raises(ValueError, match="cpu takes a core number"):
        core_choice(value)
