"""Experiment files: grid expansion, folder layout, resuming, results.csv and user errors.

Most tests train with ``fake_train`` (a real run folder, no training) so the sweep logic is
checked in milliseconds; one test runs a real one-epoch sweep on MNIST end to end.
"""

import csv
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from sparsemomentum.cli import main
from sparsemomentum.errors import UserError
from sparsemomentum.runs import RunFolder
from sparsemomentum.train.config import TrainConfig
from sparsemomentum.train.experiment import load_experiment
from sparsemomentum.train.sweep import run_sweep

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

GRID = """
[base]
model = "lenet300-100"
dataset = "mnist"
epochs = 1

[grid]
method = ["sparse-momentum", "set"]
density = [0.01, 0.05]
seed = [0, 1]

[[variant]]
name = "dense"
method = "dense"
density = 1
"""


def fake_train(config: TrainConfig, progress: bool = False) -> dict:
    """Writes what train() writes, with a test error that encodes the run, in no time."""
    if config.method == "set" and config.seed == 1 and config.density == 0.05:
        raise UserError("the training loss became nan in epoch 1; lower --lr and run again.")
    run = RunFolder(config.out, config.overwrite)
    run.write_json(RunFolder.CONFIG, config.to_dict())
    run.append_metrics(
        {"epoch": 1, "validation_accuracy": 90.0, "layer_density": {"fc1.weight": config.density}}
    )
    summary = {
        "model": config.model,
        "dataset": config.dataset,
        "method": config.method,
        "density": config.density,
        "seed": config.seed,
        "epochs": config.epochs,
        "test_error": 100 * config.density + config.seed,
        "test_accuracy": 100 - 100 * config.density - config.seed,
        "layer_density": {"fc1.weight": config.density},
    }
    run.write_json(RunFolder.SUMMARY, summary)
    return summary


def write_experiment(folder: Path, text: str = GRID, name: str = "grid.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def relative_paths(experiment) -> list[str]:
    return [experiment.relative(run) for run in experiment.runs]


def test_grid_expands_to_one_folder_per_run_and_dense_once_per_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    experiment = load_experiment(write_experiment(tmp_path), data_dir="/data")
    assert experiment.out == Path("runs/grid")
    arms = [
        f"{method}/d{density}"
        for method in ("sparse-momentum", "set")
        for density in ("0.01", "0.05")
    ] + ["dense/d1"]
    expected = [f"lenet300-100/mnist/{arm}/s{seed}" for seed in (0, 1) for arm in arms]
    assert relative_paths(experiment) == expected  # seed-major: every arm at seed 0 first
    dense = [run.config for run in experiment.runs if run.arm == "dense"]
    assert [(c.method, c.density, c.seed) for c in dense] == [("dense", 1.0, 0), ("dense", 1.0, 1)]
    assert all(
        run.config.epochs == 1 and run.config.overwrite and run.config.data_dir == "/data"
        for run in experiment.runs
    )


def test_extra_grid_axes_are_part_of_the_folder_name(tmp_path):
    text = '[grid]\nmethod = ["set"]\nlr = [0.1, 0.05]\nseed = [3]\n'
    experiment = load_experiment(write_experiment(tmp_path, text), out=tmp_path / "out")
    assert relative_paths(experiment) == [
        "lenet300-100/mnist/set_lr=0.1/d0.05/s3",
        "lenet300-100/mnist/set_lr=0.05/d0.05/s3",
    ]
    assert [run.config.lr for run in experiment.runs] == [0.1, 0.05]


@pytest.mark.parametrize(
    "name, runs, arms",
    [
        (
            "mnist-lenet300",
            7 * 4 * 3 + 3,
            {"sparse-momentum", "set", "dsr", "rigl", "snip", "gmp", "static", "dense"},
        ),
        (
            "fashion-lenet300",
            7 * 4 * 3 + 3,
            {"sparse-momentum", "set", "dsr", "rigl", "snip", "gmp", "static", "dense"},
        ),
        ("mnist-lenet5", 3 * 3 * 3 + 3, {"sparse-momentum", "set", "rigl", "dense"}),
        ("fashion-lenet5", 3 * 3 * 3 + 3, {"sparse-momentum", "set", "rigl", "dense"}),
        (
            "ablation-lenet300",
            4 * 3,
            {
                "sparse-momentum",
                "sm-random-growth",
                "sm-no-redistribution",
                "sm-random-growth-no-redistribution",
            },
        ),
        (
            "ablation-lenet5",
            4 * 3,
            {
                "sparse-momentum",
                "sm-random-growth",
                "sm-no-redistribution",
                "sm-random-growth-no-redistribution",
            },
        ),
    ],
)
def test_shipped_experiment_files_are_valid(name, runs, arms, tmp_path):
    experiment = load_experiment(EXPERIMENTS / f"{name}.toml", out=tmp_path)
    assert len(experiment.runs) == runs and {run.arm for run in experiment.runs} == arms
    assert all(run.config.epochs == 100 for run in experiment.runs)
    assert {run.config.density for run in experiment.runs if run.arm == "dense"} <= {1.0}
    if name.startswith("ablation"):
        settings = {
            (run.config.method, *map(run.config.method_options.get, ("growth", "redistribution")))
            for run in experiment.runs
        }
        assert settings == {
            ("sparse-momentum", g, r) for g in ("momentum", "random") for r in ("momentum", "none")
        }


def test_resume_skips_finished_runs_and_restarts_unfinished_ones(tmp_path):
    text = GRID.replace('["sparse-momentum", "set"]', '["sparse-momentum"]')
    experiment = load_experiment(write_experiment(tmp_path, text), out=tmp_path / "out")
    finished, killed = experiment.runs[0], experiment.runs[1]
    fake_train(finished.config)
    (finished.path / "marker").write_text("kept")
    killed.path.mkdir(parents=True)
    (killed.path / RunFolder.METRICS).write_text('{"epoch": 1}\n')

    assert (
        run_sweep(load_experiment(experiment.file, out=experiment.out), trainer=fake_train)
        == len(experiment.runs) - 1
    )
    assert (finished.path / "marker").read_text() == "kept"
    assert (
        len((killed.path / RunFolder.METRICS).read_text().splitlines()) == 1
        and (killed.path / RunFolder.SUMMARY).exists()
    )
    assert run_sweep(load_experiment(experiment.file, out=experiment.out), trainer=fake_train) == 0


def test_results_csv_has_one_row_per_finished_run_and_failures_are_reported_last(tmp_path):
    experiment = load_experiment(write_experiment(tmp_path), out=tmp_path / "out")
    with pytest.raises(
        UserError,
        match=r"1 of 10 runs failed, first lenet300-100/mnist/set/d0.05/s1: the training loss "
        r"became nan",
    ):
        run_sweep(experiment, trainer=fake_train)
    with open(experiment.out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert (
        len(rows) == 9
        and list(rows[0])[:3] == ["variant", "model", "dataset"]
        and list(rows[0])[-1] == "path"
    )
    assert "layer_density" not in rows[0]
    by_path = {row["path"]: row for row in rows}
    dense = by_path["lenet300-100/mnist/dense/d1/s1"]
    assert (
        dense["variant"],
        dense["method"],
        float(dense["density"]),
        float(dense["test_error"]),
    ) == ("dense", "dense", 1.0, 101.0)
    assert float(by_path["lenet300-100/mnist/set/d0.01/s1"]["test_error"]) == pytest.approx(2.0)
    assert not (experiment.out / "lenet300-100/mnist/set/d0.05/s1" / RunFolder.SUMMARY).exists()


def test_parallel_jobs_train_every_run_and_the_parent_writes_results(tmp_path):
    text = GRID.replace('["sparse-momentum", "set"]', '["sparse-momentum"]').replace(
        "[0, 1]", "[0]"
    )
    experiment = load_experiment(write_experiment(tmp_path, text), out=tmp_path / "out")
    assert run_sweep(experiment, jobs=2, trainer=fake_train) == 3
    assert all(run.finished for run in experiment.runs)
    saved = json.loads((experiment.runs[0].path / RunFolder.CONFIG).read_text())
    assert saved["threads"] == 1
    assert len((experiment.out / "results.csv").read_text().splitlines()) == 1 + 3


def test_a_finished_run_with_other_settings_is_refused(tmp_path):
    experiment = load_experiment(write_experiment(tmp_path), out=tmp_path / "out")
    fake_train(experiment.runs[0].config)
    with pytest.raises(
        UserError, match=r"was trained with epochs=1 but .*grid.toml asks for 2; delete that folder"
    ):
        load_experiment(
            write_experiment(tmp_path, GRID.replace("epochs = 1", "epochs = 2")), out=experiment.out
        )


@pytest.mark.parametrize(
    "text, message",
    [
        ("[base]\nepoch = 3\n", r"unknown key 'epoch' in \[base\] of .*bad.toml"),
        ("[grid]\nsed = [0, 1]\n", r"unknown key 'sed' in \[grid\] of .*bad.toml"),
        (
            '[[variant]]\nname = "x"\ngrowht = "random"\n',
            r"unknown key 'growht' in \[\[variant\]\] 'x' of .*bad.toml",
        ),
        (
            '[experiment]\nname = "x"\n',
            r"unknown key 'experiment' in .*bad.toml; an experiment file has",
        ),
        ("[grid]\ndensity = 0.05\n", r"density in \[grid\] of .*bad.toml must be a non-empty list"),
        (
            '[base]\nepochs = "ten"\n',
            r"epochs in \[base\] of .*bad.toml must be an integer, got 'ten'",
        ),
        ('[base]\nout = "x"\n', r"out in \[base\] of .*bad.toml is chosen by the sweep"),
        ("[base]\nepochs = 1\n[grid]\nepochs = [1]\n", r"epochs is in both \[base\] and \[grid\]"),
        (
            '[[variant]]\ngrowth = "random"\n',
            r"\[\[variant\]\] number 1 in .*bad.toml needs a name",
        ),
        (
            '[grid]\nmethod = ["magic"]\n',
            r"bad.toml, run magic at density 0.05: unknown method 'magic'",
        ),
        ("[base\n", r"bad.toml is not valid TOML"),
    ],
)
def test_bad_experiment_file_is_one_sentence_and_exit_code_2(text, message, tmp_path, capsys):
    path = write_experiment(tmp_path, text, "bad.toml")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("sparsemomentum: error: ") and len(error.splitlines()) == 1
    assert re.search(message, error), error
    assert not (tmp_path / "out").exists()


def test_dry_run_lists_runs_to_do_and_counts_finished(tmp_path, capsys):
    experiment = load_experiment(write_experiment(tmp_path), out=tmp_path / "out")
    fake_train(experiment.runs[0].config)
    experiment.runs[1].path.mkdir(parents=True)
    assert main(["sweep", str(experiment.file), "--out", str(experiment.out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "lenet300-100/mnist/sparse-momentum/d0.05/s0  (unfinished folder without a usable "
        "checkpoint, will restart)"
    )
    assert lines[-1] == f"10 runs in {experiment.out}: 1 already finished, 9 to do."
    assert len(lines) == 10 and not (experiment.out / "results.csv").exists()


def test_real_one_epoch_sweep_then_report(tmp_path, data_dir, capsys):
    # Large batches: 28 steps, so the real loop, data and run folder run end to end in seconds.
    text = (
        '[base]\nepochs = 1\nbatch_size = 2000\n[grid]\nmethod = ["sparse-momentum"]\n'
        "density = [0.05]\nseed = [0]\n"
    )
    path = write_experiment(tmp_path, text, "tiny.toml")
    out = tmp_path / "sweep"
    assert main(["sweep", str(path), "--out", str(out), "--data-dir", str(data_dir)]) == 0
    assert (
        "trained 1 of 1 runs (the others were already finished); results in "
        in capsys.readouterr().out
    )
    with open(out / "results.csv") as handle:
        (row,) = csv.DictReader(handle)
    assert (
        row["path"] == "lenet300-100/mnist/sparse-momentum/d0.05/s0"
        and row["variant"] == "sparse-momentum"
    )
    assert float(row["test_error"]) == pytest.approx(100 - float(row["test_accuracy"]))
    assert main(["report", str(out)]) == 0
    assert "| sparse-momentum | " in (out / "report.md").read_text()


def test_only_trains_the_selected_runs_and_results_keep_every_finished_one(tmp_path, capsys):
    file = write_experiment(tmp_path)
    first = load_experiment(
        file,
        out=tmp_path / "out",
        only=["seed=0", "density=0.05", "density=1", "variant=set", "variant=dense"],
    )
    assert sorted(first.relative(run) for run in first.pending()) == [
        "lenet300-100/mnist/dense/d1/s0",
        "lenet300-100/mnist/set/d0.05/s0",
    ]
    assert run_sweep(first, trainer=fake_train) == 2
    later = load_experiment(file, out=tmp_path / "out", only=["method=sparse-momentum", "seed=1"])
    assert run_sweep(later, trainer=fake_train) == 2
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert (
        len(rows) == 1 + 4
    )  # the header and all four finished runs, whichever --only trained them
    assert (
        main(["sweep", str(file), "--out", str(tmp_path / "out"), "--dry-run", "--only", "seed=1"])
        == 0
    )
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"10 runs in {tmp_path / 'out'}: 4 already finished, 3 to do, 3 left out by --only."
    )


@pytest.mark.parametrize(
    "selection, message",
    [
        ("seed", "--only takes KEY=VALUE"),
        ("colour=red", "'colour' is not a run setting"),
        ("seed=first", "'first' is not a valid value for seed"),
    ],
)
def test_bad_only_is_one_sentence(selection, message, tmp_path, capsys):
    file = write_experiment(tmp_path)
    assert main(["sweep", str(file), "--out", str(tmp_path / "out"), "--only", selection]) == 2
    assert message in capsys.readouterr().err


def test_a_run_another_sweep_holds_is_skipped_not_trained_twice(tmp_path, capsys):
    from sparsemomentum.runs.locks import locked
    from sparsemomentum.train.sweep import _lock_file

    text = GRID.replace('["sparse-momentum", "set"]', '["sparse-momentum"]')
    experiment = load_experiment(write_experiment(tmp_path, text), out=tmp_path / "out")
    held = experiment.runs[0]
    with locked(_lock_file(experiment, held)) as holding:  # as a second sweep process would
        assert holding
        assert run_sweep(experiment, trainer=fake_train) == len(experiment.runs) - 1
    assert not held.finished and "skipped 1 runs another sweep process is training" in (
        capsys.readouterr().out + capsys.readouterr().err
    )
    assert run_sweep(load_experiment(experiment.file, out=experiment.out), trainer=fake_train) == 1


def test_a_killed_run_resumes_from_its_checkpoint_and_says_so_in_the_plan(tmp_path, data_dir):
    text = "[base]\nepochs = 2\nbatch_size = 2000\n[grid]\nseed = [0]\n"
    experiment = load_experiment(
        write_experiment(tmp_path, text), out=tmp_path / "out", data_dir=data_dir
    )
    (run,) = experiment.runs
    seen = []

    def train_one_epoch_then_resume(config, progress=False):
        seen.append(config.resume)
        if config.resume is None:  # the first attempt is "killed" after epoch 1
            from sparsemomentum.train.loop import train

            train(replace(config, epochs=1), progress)
            (run.path / "summary.json").unlink()
            config_file = run.path / "config.json"
            config_file.write_text(config_file.read_text().replace('"epochs": 1', '"epochs": 2'))
            raise UserError("killed")
        from sparsemomentum.train.loop import train

        return train(config, progress)

    with pytest.raises(UserError, match="killed"):
        run_sweep(experiment, trainer=train_one_epoch_then_resume)
    assert "(unfinished, will resume from its checkpoint)" in experiment.plan()
    assert run_sweep(experiment, trainer=train_one_epoch_then_resume) == 1
    assert seen == [None, str(run.path)]
    epochs = [json.loads(line)["epoch"] for line in (run.path / "metrics.jsonl").open()]
    assert epochs == [1, 2] and run.finished


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '[base]\nresume = "runs/x"\n[grid]\nseed = [0]\n',
            "resume in \\[base\\] of .* is chosen by",
        ),
        ("", "defines no runs to sweep"),
        ("[base]\nepochs = 3\n", "defines no runs to sweep"),
        ("[base]\nlr_milestones = [1, 2.5]\n[grid]\nseed = [0]\n", "must be a list of integers"),
    ],
)
def test_experiment_files_refuse_what_makes_no_sense_in_a_grid(text, message, tmp_path):
    with pytest.raises(UserError, match=message):
        load_experiment(write_experiment(tmp_path, text), out=tmp_path / "out")


def test_numbers_are_accepted_where_the_command_line_takes_numbers(tmp_path):
    text = (
        "[base]\nlr_milestones = [1, 2]\nupdate_interval = 100\nprune_rate = 0\n"
        "[grid]\nseed = [0]\n"
    )
    (run,) = load_experiment(write_experiment(tmp_path, text), out=tmp_path / "out").runs
    assert run.config.lr_milestones == [1, 2]
    assert run.config.method_options == {"update_interval": 100, "prune_rate": 0.0}


def test_a_base_method_option_applies_to_the_arms_whose_method_has_it(tmp_path):
    text = (
        '[base]\nupdate_interval = 100\nepochs = 1\n[grid]\nmethod = ["sparse-momentum", '
        '"static"]\nseed = [0]\n'
    )
    runs = {run.arm: run for run in load_experiment(write_experiment(tmp_path, text)).runs}
    assert runs["sparse-momentum"].config.method_options == {"update_interval": 100}
    assert runs["static"].config.method_options == {}


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_stop_when_their_sweep_process_is_killed(tmp_path, data_dir):
    """A sweep killed without clean-up (SIGKILL) must not leave its workers training on."""
    import subprocess
    import sys
    import time

    file = write_experiment(tmp_path, "[base]\nepochs = 100\n[grid]\nseed = [0, 1]\n")
    command = [sys.executable, "-m", "sparsemomentum", "sweep", str(file), "--jobs", "2"]
    command += ["--out", str(tmp_path / "out"), "--data-dir", str(data_dir)]
    sweep = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(workers := _children(sweep.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers) == 2
    sweep.kill()
    sweep.wait()
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in workers if Path(f"/proc/{pid}/stat").exists()]
    zombies = [
        p for p in alive if Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    ]
    assert alive == zombies  # gone (or reaped-to-be zombies), not training
