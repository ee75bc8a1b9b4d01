"""Idle CPU priority for a spare study process while it warms up (Linux).

A spare started while a study trains must not take CPU from its trials: it imports and
connects under ``SCHED_IDLE`` (it runs only on CPU time nothing else wants) and goes back to
normal scheduling, every thread of it, the moment a study is handed to it. Leaving
``SCHED_IDLE`` needs ``CAP_SYS_NICE`` or an ``RLIMIT_NICE`` that allows the process's nice
value, so ``can_idle`` tries it on a throwaway thread first: a process that could not come back
never goes idle.
"""

from __future__ import annotations

import functools
import os
import threading


def _try_idle_and_back() -> bool:
    """On the calling thread: SCHED_IDLE, then normal again; whether both were allowed."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except OSError:
        return False  # this thread stays idle, and ends now
    return True


@functools.cache
def can_idle() -> bool:
    """Whether this process may go idle and come back (tried on a thread of its own)."""
    answer: list[bool] = []
    probe = threading.Thread(target=lambda: answer.append(_try_idle_and_back()), daemon=True)
    probe.start()
    probe.join()
    return bool(answer and answer[0])


def go_idle() -> bool:
    """Idle priority for this thread and the threads it starts from now on, if ``can_idle``."""
    if not can_idle():
        return False
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    return True


def back_to_normal() -> None:
    """Normal scheduling for every thread of this process."""
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setscheduler(int(task), os.SCHED_OTHER, os.sched_param(0))
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
