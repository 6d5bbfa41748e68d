"""How many threads a training run uses when the user does not say: the cores left idle.

torch's OpenMP threads meet at a barrier in every operation. When another process keeps one
of two cores busy, a second thread waits for a time slice at each barrier: LeNet-300-100's
step took 2.1 ms on one thread and 97 ms on two (sparse backend: 1.1 ms and 39 ms) on this
2-core machine with one core busy (docs/speed.md, "Threads under load"). So before every
epoch the run counts the cores that other processes leave idle, over a 50 ms sample of
/proc/stat, and uses that many threads (at least one). Niced work counts as busy: with the
kernel's autogroups (the default on most distributions) a niced process in another session
does not give way, and a second thread waiting at every barrier costs far more than a core
left unused (a sweep at nice 19 beside a run that took both cores made its epochs 80x
slower). Where /proc/stat is missing (not Linux) torch's own default stays.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_STAT = Path("/proc/stat")
# /proc/stat columns after the cpu name: user nice system idle iowait irq softirq steal
_BUSY = (0, 1, 2, 5, 6, 7)
_IDLE = (3, 4)


def _times() -> dict[int, tuple[int, int]]:
    """(busy, idle) jiffies of each cpu this process may run on."""
    allowed = os.sched_getaffinity(0)
    times = {}
    for line in _STAT.read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu" and int(name[3:]) in allowed:
            values = [int(value) for value in fields[:8]]
            times[int(name[3:])] = (sum(values[i] for i in _BUSY), sum(values[i] for i in _IDLE))
    return times


def idle_cores(sample_seconds: float = 0.05) -> int | None:
    """The number of this process's cores that are idle now (at least 1), or None if unknown."""
    try:
        before = _times()
        time.sleep(sample_seconds)
        after = _times()
    except (OSError, ValueError, AttributeError):
        return None
    idle = 0.0
    for cpu, (busy_after, idle_after) in after.items():
        busy = busy_after - before[cpu][0]
        rest = idle_after - before[cpu][1]
        idle += rest / (busy + rest) if busy + rest else 1.0
    return max(1, round(idle)) if after else None
