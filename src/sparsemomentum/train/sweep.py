"""Training the runs of an experiment: skip what is done, resume what was cut short, share
the work with other sweeps of the same file.

Each run is trained under a lock (``runs.locks``), so two sweep processes on one experiment
never train the same run: the second skips a run the first holds. A run killed mid-way
(an unfinished folder with a checkpoint and the same recipe) resumes from its checkpoint; a
folder without one, or trained with other settings, starts again. results.csv lists every
finished run and is rewritten, under its own lock, after each run.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from ..errors import UserError
from ..runs import read_summary, write_atomically
from ..runs.locks import locked
from .config import TrainConfig
from .experiment import Experiment, Run
from .loop import train

Trainer = Callable[[TrainConfig, bool], dict[str, Any]]

RESULTS = "results.csv"
LOCKS = ".locks"
# results.csv starts with what identifies a run and what it scored; other columns follow sorted.
LEADING_COLUMNS = (
    "variant", "model", "dataset", "method", "density", "seed", "epochs", "test_error",
    "test_accuracy",
)  # fmt: skip
TRAINED, SKIPPED = "trained", "skipped"


def _lock_file(experiment: Experiment, run: Run) -> Path:
    return experiment.out / LOCKS / (experiment.relative(run).replace("/", "__") + ".lock")


def write_results(experiment: Experiment) -> Path:
    """One row per finished run (summary scalars, arm name, run path), replaced atomically."""
    rows = []
    for run in experiment.runs:
        if run.finished:
            summary = read_summary(run.path)
            scalars = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
            rows.append({"variant": run.arm, **scalars, "path": experiment.relative(run)})
    keys = {key for row in rows for key in row}
    leading = [key for key in LEADING_COLUMNS if key in keys]
    columns = leading + sorted(keys - {*LEADING_COLUMNS, "path"}) + ["path"]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    experiment.out.mkdir(parents=True, exist_ok=True)
    with locked(experiment.out / LOCKS / "results.lock", wait=True):
        write_atomically(experiment.out / RESULTS, text.getvalue())
    return experiment.out / RESULTS


def _attempt(trainer: Trainer, run: Run, lock: Path, progress: bool) -> str:
    """Train (or resume) one run if no other process holds it: "trained", "skipped", or the
    one-sentence reason it failed, so that the other runs go on."""
    with locked(lock) as holding:
        if not holding or run.finished:
            return SKIPPED
        config = run.config
        if run.resumable():
            config = replace(config, resume=str(run.path))
        try:
            trainer(config, progress)
        except UserError as error:
            return str(error)
    return TRAINED


def run_sweep(experiment: Experiment, jobs: int = 1, trainer: Trainer = train) -> int:
    """Train every unfinished run not held by another sweep (``jobs`` at a time, one thread
    each); returns how many this process trained.

    Failed runs are reported at the end as one UserError; their folders have no summary.json,
    so the next sweep retries them.
    """
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}.")
    pending = experiment.pending()
    outcomes: dict[str, list[str]] = {TRAINED: [], SKIPPED: [], "failed": []}
    bar = tqdm(total=len(pending), desc="sweep", unit="run", dynamic_ncols=True)

    def finished(run: Run, outcome: str) -> None:
        kind = outcome if outcome in (TRAINED, SKIPPED) else "failed"
        outcomes[kind].append(
            experiment.relative(run) + ("" if kind != "failed" else f": {outcome}")
        )
        if kind == "failed":
            tqdm.write(f"failed {outcomes[kind][-1]}")
        bar.update()
        write_results(experiment)

    try:
        _run_all(experiment, pending, jobs, trainer, finished)
    finally:
        bar.close()
    write_results(experiment)
    if outcomes[SKIPPED]:
        tqdm.write(f"skipped {len(outcomes[SKIPPED])} runs another sweep process is training")
    if outcomes["failed"]:
        failed = outcomes["failed"]
        raise UserError(f"{len(failed)} of {len(pending)} runs failed, first {failed[0]}")
    return len(outcomes[TRAINED])


def _run_all(
    experiment: Experiment,
    pending: list[Run],
    jobs: int,
    trainer: Trainer,
    finished: Callable[[Run, str], None],
) -> None:
    if jobs == 1:
        for run in pending:
            tqdm.write(f"run {experiment.relative(run)}")
            finished(run, _attempt(trainer, run, _lock_file(experiment, run), True))
        return
    # spawn, not fork: a forked copy of a process that already used torch's threads can hang.
    pool = ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )  # fmt: skip
    try:
        futures = {}
        for run in pending:
            single = replace(run, config=replace(run.config, threads=1))
            lock = _lock_file(experiment, run)
            futures[pool.submit(_attempt, trainer, single, lock, False)] = run
        for future in as_completed(futures):
            finished(futures[future], future.result())
    finally:
        pool.shutdown(cancel_futures=True)


def _exit_with_parent(parent: int) -> None:
    """Stop this worker when its sweep process is gone. A sweep killed with SIGTERM or SIGKILL
    runs no clean-up, and its workers would train on unseen, holding their runs' locks; this
    way the next sweep resumes those runs from their last checkpoints."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
