"""Idle priority for a warming spare, and every thread back to normal when its study comes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gentune.service.scheduling import priority

CHILD = """
import os, threading
from gentune.service.scheduling import priority

assert priority.go_idle()
started, stop = threading.Event(), threading.Event()
thread = threading.Thread(target=lambda: (started.set(), stop.wait()))
thread.start()
started.wait()
tasks = lambda: [int(t) for t in os.listdir("/proc/self/task")]
print(sorted({os.sched_getscheduler(t) for t in tasks()}) == [os.SCHED_IDLE])
priority.back_to_normal()
print(sorted({os.sched_getscheduler(t) for t in tasks()}) == [os.SCHED_OTHER])
stop.set()
"""


@pytest.mark.skipif(not priority.can_idle(), reason="this system lets no process leave idle")
def test_idle_reaches_threads_started_after_it_and_normal_reaches_every_thread() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_can_idle_leaves_the_calling_thread_as_it_was() -> None:
    before = os.sched_getscheduler(0)
    priority.can_idle.cache_clear()
    priority.can_idle()
    assert os.sched_getscheduler(0) == before
