"""The default thread count: the cores other processes leave idle."""

import itertools

from sparsemomentum.train import threads


def test_idle_cores_counts_the_cores_others_leave_idle(monkeypatch):
    # cpu 0 fully busy over the sample, cpu 1 idle, cpu 2 half busy
    samples = iter([{0: (100, 0), 1: (0, 100), 2: (0, 0)}, {0: (200, 0), 1: (0, 200), 2: (50, 50)}])
    monkeypatch.setattr(threads, "_times", lambda: next(samples))
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    assert threads.idle_cores() == 2  # 0 + 1 + 0.5, rounded half to even


def test_a_fully_busy_machine_still_gets_one_thread(monkeypatch):
    samples = itertools.cycle([{0: (0, 0), 1: (0, 0)}, {0: (100, 0), 1: (100, 0)}])
    monkeypatch.setattr(threads, "_times", lambda: next(samples))
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    assert threads.idle_cores() == 1


def test_idle_cores_on_this_machine_is_a_sensible_number():
    count = threads.idle_cores(0.01)
    assert count is None or 1 <= count <= len(__import__("os").sched_getaffinity(0))


def test_niced_work_counts_as_busy(monkeypatch, tmp_path):
    """A sweep at nice 19 in another session does not give way (autogroups): a run beside it
    must not take its core."""
    stat = tmp_path / "stat"
    monkeypatch.setattr(threads, "_STAT", stat)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    lines = iter(
        [
            "cpu 0 0 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0\n",
            # cpu0: 100 jiffies of niced work; cpu1: 100 idle
            "cpu 0 0 0 0 0 0 0 0\ncpu0 0 100 0 0 0 0 0 0\ncpu1 0 0 0 100 0 0 0 0\n",
        ]
    )
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: stat.write_text(next(lines)))
    stat.write_text(next(lines))
    assert threads.idle_cores() == 1
