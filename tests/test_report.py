"""The report, on run folders written by the test: table values, paper column, best method, PNGs."""

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from sparsemomentum.analysis.cells import Cell, cell_text
from sparsemomentum.analysis.paper import paper_error
from sparsemomentum.analysis.records import find_runs
from sparsemomentum.analysis.report import write_report
from sparsemomentum.cli import main
from sparsemomentum.data import dataset_classes
from sparsemomentum.errors import UserError

LAYERS = ("fc1.weight", "fc2.weight", "fc3.weight")
# (folder name, method, density, {seed: test error in %}), as a sweep lays them out
RUNS = [
    ("sparse-momentum", "sparse-momentum", 0.01, {0: 2.0, 1: 2.3, 2: 2.6}),
    ("sparse-momentum", "sparse-momentum", 0.05, {0: 1.6}),
    ("set", "set", 0.01, {0: 2.5, 1: 2.7}),
    ("set", "set", 0.05, {0: 1.5}),
    ("sm-random-growth", "sparse-momentum", 0.05, {0: 1.9}),
    ("dense", "dense", 1.0, {0: 1.3, 1: 1.5}),
]


def write_run(
    folder: Path, method: str, density: float, seed: int, error: float, epochs: int = 3
) -> Path:
    """The three files of a finished run folder, with per-layer densities that move over
    training."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"method": method, "density": density, "seed": seed, "epochs": epochs})
    )
    with open(folder / "metrics.jsonl", "w") as out:
        for epoch in range(1, epochs + 1):
            layers = {
                name: min(1.0, density * (1 + 0.1 * epoch * (i - 1)))
                for i, name in enumerate(LAYERS)
            }
            out.write(
                json.dumps(
                    {
                        "epoch": epoch,
                        "validation_accuracy": 90 + epoch - error,
                        "layer_density": layers,
                    }
                )
                + "\n"
            )
    summary = {
        "model": "lenet300-100",
        "dataset": "mnist",
        "method": method,
        "density": density,
        "seed": seed,
        "epochs": epochs,
        "test_error": error,
        "test_accuracy": 100 - error,
        "layer_density": layers,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    for name, method, density, errors in RUNS:
        for seed, error in errors.items():
            write_run(
                root / "lenet300-100" / "mnist" / name / f"d{density:g}" / f"s{seed}",
                method,
                density,
                seed,
                error,
            )
    return root


def table_rows(report: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split(" | ") for line in report.splitlines() if line.startswith("| ")]
    return {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows}


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()


def test_cell_is_mean_and_standard_error_over_seeds():
    cell = Cell.of([2.0, 2.3, 2.6])
    assert (
        cell.mean == pytest.approx(2.3)
        and cell.se == pytest.approx(0.3 / math.sqrt(3))
        and cell.n == 3
    )
    assert cell_text(cell) == "2.30 ± 0.17 (3)"
    assert cell_text(cell, untrained=1) == "2.30 ± 0.17 (3, +1 did not train)"
    assert cell_text(Cell.of([1.6])) == "1.60 (1)"
    assert cell_text(None, untrained=2) == "– (2 did not train)" and cell_text(None) == "–"


def mark_untrained(run: Path, test_loss: float = 2.3010) -> None:
    """Give a run's summary the test loss of a classifier that ignores its input (ln 10 =
    2.3026 on MNIST's ten classes) and the error of a constant output."""
    summary = json.loads((run / "summary.json").read_text())
    summary.update(test_loss=test_loss, test_error=88.65, test_accuracy=11.35)
    (run / "summary.json").write_text(json.dumps(summary))


def test_a_run_that_did_not_train_is_counted_listed_and_left_out_of_the_means(sweep, tmp_path):
    cell = sweep / "lenet300-100" / "mnist" / "sparse-momentum" / "d0.05"
    mark_untrained(write_run(cell / "s1", "sparse-momentum", 0.05, 1, 88.65))
    rigl = sweep / "lenet300-100" / "mnist" / "rigl" / "d0.05"
    mark_untrained(write_run(rigl / "s0", "rigl", 0.05, 0, 88.65))
    out = tmp_path / "report"
    report = write_report(sweep, out=out).read_text()
    rows = table_rows(report)
    assert rows["sparse-momentum"][2] == "1.60 (1, +1 did not train)"  # not (1.6 + 88.65) / 2
    assert rows["rigl"][2] == "– (1 did not train)"
    assert "(2 did not train: listed at the end)" in report
    assert (
        "| `lenet300-100/mnist/sparse-momentum/d0.05/s1` | test loss at ln(classes) | 88.65 |"
        in report
    )
    assert (
        "| `lenet300-100/mnist/rigl/d0.05/s0` | test loss at ln(classes) | 88.65 | 2.3010 |"
        in report
    )
    assert "5 %: set (1.50)" in report  # the best line reads trained means only
    assert_png(out / "lenet300-100_mnist_error-vs-density.png")


def write_diverged_run(folder: Path, method: str, density: float, seed: int, **settings) -> Path:
    """A run folder as training leaves it when the loss turns NaN: config.json (all of a real
    run's placing settings), the epochs before, diverged.json, no summary.json."""
    folder.mkdir(parents=True)
    config = {"model": "lenet300-100", "dataset": "mnist", "method": method, "density": density,
              "seed": seed, "epochs": 3, **settings}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "validation_accuracy": 80}))
    reason = "the training loss became nan in epoch 2"
    (folder / "diverged.json").write_text(json.dumps({"reason": reason, "epoch": 2}))
    return folder


def test_a_run_that_diverged_is_counted_in_its_cell_and_listed_with_why(sweep, tmp_path):
    cell = sweep / "lenet300-100" / "mnist" / "sparse-momentum" / "d0.05"
    write_diverged_run(cell / "s1", "sparse-momentum", 0.05, 1)
    write_diverged_run(sweep / "lenet300-100" / "mnist" / "rigl" / "d0.01" / "s0", "rigl", 0.01, 0)
    report = write_report(sweep, out=tmp_path / "report").read_text()
    rows = table_rows(report)
    assert rows["sparse-momentum"][2] == "1.60 (1, +1 did not train)"  # 5 %, beside the paper's
    assert rows["rigl"][0] == "– (1 did not train)"
    assert report.count("10 finished runs and 2 that diverged under") == 1
    assert "(2 did not train: listed at the end)" in report
    assert (
        "| `lenet300-100/mnist/sparse-momentum/d0.05/s1` | diverged: the training loss became "
        "nan in epoch 2 | – | – |"
    ) in report


def test_a_diverged_run_that_finished_later_counts_once_as_finished(sweep):
    run = sweep / "lenet300-100" / "mnist" / "set" / "d0.05" / "s0"
    (run / "diverged.json").write_text(json.dumps({"reason": "an earlier attempt", "epoch": 2}))
    records = [record for record in find_runs(sweep) if record.path == run]
    assert len(records) == 1 and records[0].trained and records[0].score == 1.5


def test_a_diverged_run_whose_config_is_damaged_is_skipped_with_a_warning(sweep):
    run = write_diverged_run(sweep / "lenet300-100" / "mnist" / "set" / "d0.05" / "s1", "set",
                             0.05, 1)  # fmt: skip
    (run / "config.json").write_text("{")
    with pytest.warns(UserWarning, match="it diverged, and its config.json is damaged"):
        runs = find_runs(sweep)
    assert all(record.path != run for record in runs)


def test_against_counts_the_runs_that_did_not_train_at_each_value(tmp_path):
    root = tmp_path / "sweep"
    for momentum in (0.9, 0.99):
        folder = (
            root / "lenet300-100" / "mnist" / f"sparse-momentum_momentum={momentum:g}" / "d0.05"
        )
        for seed in range(3):
            if momentum == 0.99 or seed == 2:
                write_diverged_run(folder / f"s{seed}", "sparse-momentum", 0.05, seed,
                                   momentum=momentum)  # fmt: skip
                continue
            run = write_run(folder / f"s{seed}", "sparse-momentum", 0.05, seed, 1.0 + seed)
            config = json.loads((run / "config.json").read_text())
            (run / "config.json").write_text(json.dumps({**config, "momentum": momentum}))
    rigl = root / "lenet300-100" / "mnist" / "rigl_momentum=0.9" / "d0.05" / "s0"
    write_diverged_run(rigl, "rigl", 0.05, 0, momentum=0.9)
    report = write_report(root, against="momentum").read_text()
    assert (
        "| sparse-momentum | 1.50 ± 0.50 (2, +1 did not train) | – (3 did not train) | – |"
    ) in report  # one value measured: no spread to claim
    assert "| rigl | – (1 did not train) | – | – |" in report  # a row that never trained


def test_against_with_no_trained_run_says_so_and_lists_the_runs(tmp_path):
    run = write_run(tmp_path / "sweep" / "s0", "sparse-momentum", 0.05, 0, 88.65)
    mark_untrained(run)
    report = write_report(tmp_path / "sweep", against="density").read_text()
    assert "No run trained, so there is no test error against `density` to draw." in report
    assert "| `s0` | test loss at ln(classes) | 88.65 | 2.3010 |" in report


@pytest.mark.parametrize(
    "dataset, test_loss, trained",
    [
        ("mnist", 2.3010, False),  # ln 10 = 2.3026: the loss of ignoring the input
        ("mnist", 2.2570, False),  # within 2 % of it (a collapse that kept a little signal)
        ("mnist", 2.2500, True),
        ("cifar100", 2.3010, True),  # ln 100 = 4.6: 2.3 is a network that learned something
        ("cifar100", 4.6000, False),
        ("a-data-set-of-another-program", 2.3010, True),  # class count unknown: kept
    ],
)
def test_trained_means_a_test_loss_clear_of_ln_classes(tmp_path, dataset, test_loss, trained):
    run = write_run(tmp_path / "run", "sparse-momentum", 0.05, 0, 88.65)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(
        json.dumps({**summary, "dataset": dataset, "test_loss": test_loss})
    )
    [record] = find_runs(run)
    assert record.trained is trained


def test_data_sets_register_their_class_counts():
    assert dataset_classes("mnist") == dataset_classes("fashion-mnist") == 10
    assert dataset_classes("cifar10") == 10 and dataset_classes("cifar100") == 100
    assert dataset_classes("shakespeare-char") is None  # language modelling: bits per character
    assert dataset_classes("imagenet") is None  # a folder may hold any subset of the classes
    assert dataset_classes("no-such-data") is None


def test_paper_numbers_are_errors_in_percent():
    assert paper_error("lenet300-100", "mnist", "sparse-momentum", 0.02) == 1.99
    assert paper_error("lenet300-100", "mnist", "sparse-momentum", 0.1) == pytest.approx(1.33)
    assert paper_error("lenet300-100", "mnist", "dsr", 0.01) == pytest.approx(2.46)
    assert paper_error("lenet300-100", "mnist", "set", 0.05) == pytest.approx(1.86)
    assert paper_error("lenet5-caffe", "mnist", "dense", 1.0) == 0.58
    assert paper_error("lenet5-caffe", "fashion-mnist", "dense", 1.0) is None


def test_sweep_report_table_paper_column_best_line_and_figures(sweep, tmp_path):
    out = tmp_path / "report"
    report_file = write_report(sweep, out=out)
    assert report_file == out / "report.md"
    report = report_file.read_text()
    rows = table_rows(report)
    assert rows["method"] == ["1 %", "paper", "5 %", "paper", "100 %", "paper"]
    assert rows["sparse-momentum"] == ["2.30 ± 0.17 (3)", "2.36", "1.60 (1)", "1.53", "–", "–"]
    assert rows["set"] == ["2.60 ± 0.10 (2)", "4.2", "1.50 (1)", "1.86", "–", "–"]
    assert rows["sm-random-growth"] == ["–", "–", "1.90 (1)", "–", "–", "–"]
    assert rows["dense"] == ["–", "–", "–", "–", "1.40 ± 0.10 (2)", "1.34"]
    assert list(rows) == ["method", "---", "sparse-momentum", "set", "sm-random-growth", "dense"]
    assert (
        "Lowest mean test error (%) among sparse methods: 1 %: sparse-momentum (2.30); 5 %: set "
        "(1.50)." in report
    )
    figures = sorted(path.name for path in out.glob("*.png"))
    assert figures == [
        "lenet300-100_mnist_error-vs-density.png",
        "lenet300-100_mnist_layer-density_d0.05.png",
        "lenet300-100_mnist_validation-accuracy_d0.05.png",
    ]
    for name in figures:
        assert f"]({name})" in report
        assert_png(out / name)
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_single_run_folder_gets_a_table_and_two_figures(tmp_path, capsys):
    run = write_run(tmp_path / "run", "set", 0.02, seed=4, error=2.2)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'report.md'}"
    rows = table_rows((run / "report.md").read_text())
    assert rows["method"] == ["2 %"] and rows["set"] == ["2.20 (1)"]
    assert sorted(path.name for path in run.glob("*.png")) == [
        "lenet300-100_mnist_layer-density_d0.02.png",
        "lenet300-100_mnist_validation-accuracy_d0.02.png",
    ]


def test_density_of_the_figures_can_be_chosen_and_must_exist(sweep, tmp_path):
    write_report(sweep, out=tmp_path / "a", density=0.01)
    assert (tmp_path / "a" / "lenet300-100_mnist_layer-density_d0.01.png").exists()
    with pytest.raises(
        UserError,
        match=r"no runs at density 0.02 for lenet300-100 on mnist; choose one of: 0.01, 0.05, 1",
    ):
        write_report(sweep, out=tmp_path / "b", density=0.02)


def test_a_folder_without_runs_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished runs (summary.json) under" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist; pass a run folder or a sweep folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda f: (f / "summary.json").write_text(""), "not JSON"),
        (lambda f: (f / "summary.json").write_text('{"model": "lenet300-1'), "not JSON"),
        (lambda f: (f / "summary.json").write_text('{"model": "lenet300-100"}'), "no 'dataset'"),
    ],
)
def test_damaged_runs_are_skipped_with_one_warning_each(sweep, tmp_path, damage, why):
    broken = sweep / "lenet300-100" / "mnist" / "set" / "d0.01" / "s1"
    damage(broken)
    with open(sweep / "lenet300-100/mnist/set/d0.01/s0/metrics.jsonl", "a") as out:
        out.write('{"epoch": 4, "validation_acc')  # a line cut short by a kill
    with pytest.warns(UserWarning, match=f"skipping {broken}: .*{why}"):
        report = write_report(sweep).read_text()
    assert table_rows(report)["set"][0] == "2.50 (1)"


def test_runs_of_different_recipes_are_not_averaged_together(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "a", "sparse-momentum", 0.05, 0, 1.0, epochs=1)
    write_run(root / "b", "sparse-momentum", 0.05, 0, 2.0, epochs=3)
    write_run(root / "c", "sparse-momentum", 0.05, 1, 3.0, epochs=3)
    rows = table_rows(write_report(root).read_text())
    assert rows["sparse-momentum (epochs=1)"][0] == "1.00 (1)"
    assert rows["sparse-momentum (epochs=3)"][0] == "2.50 ± 0.50 (2)"


def test_a_setting_an_older_run_did_not_record_does_not_split_a_grid(tmp_path):
    root = tmp_path / "runs"
    old = write_run(root / "old", "sparse-momentum", 0.05, 0, 1.0)
    new = write_run(root / "new", "sparse-momentum", 0.05, 1, 2.0)
    config = json.loads((new / "config.json").read_text())
    (new / "config.json").write_text(json.dumps({**config, "init": "model", "warmup_epochs": 0.0}))
    config = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**config, "warmup_epochs": 0}))
    rows = table_rows(write_report(root).read_text())
    assert rows["sparse-momentum"][0] == "1.50 ± 0.50 (2)"


def test_report_out_naming_a_file_is_one_sentence(sweep, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["report", str(sweep), "--out", str(tmp_path / "file")]) == 2
    assert "--out " in capsys.readouterr().err


def test_error_against_a_swept_setting_with_differences_to_a_baseline(tmp_path):
    root = tmp_path / "sweep"
    errors = {  # row -> prune rate -> errors over seeds
        "sparse-momentum": {0.2: [1.0, 1.2], 0.5: [1.1, 1.1], 0.7: [1.3]},
        "set": {0.2: [1.6, 1.8], 0.5: [2.0, 2.2], 0.7: [2.5]},
    }
    for row, by_rate in errors.items():
        for rate, values in by_rate.items():
            for seed, error in enumerate(values):
                folder = root / "lenet300-100" / "mnist" / f"{row}_prune_rate={rate:g}" / "d0.05"
                run = write_run(folder / f"s{seed}", row, 0.05, seed, error)
                config = json.loads((run / "config.json").read_text())
                (run / "config.json").write_text(json.dumps({**config, "prune_rate": rate}))
    report = write_report(root, against="prune_rate", baseline="sparse-momentum").read_text()
    assert "| sparse-momentum | 1.10 ± 0.10 (2) | 1.10 ± 0.00 (2) | 1.30 (1) | 0.20 |" in report
    assert "| set | 1.70 ± 0.10 (2) | 2.10 ± 0.10 (2) | 2.50 (1) | 0.80 |" in report
    # minus the baseline; one seed has no standard error to combine
    assert "| set | 0.60 ± 0.14 (2) | 1.00 ± 0.10 (2) | 1.20 (1) | 0.60 |" in report
    assert_png(root / "lenet300-100_mnist_error-vs-prune_rate.png")
    with pytest.raises(UserError, match="no run records a number for 'depth'"):
        write_report(root, against="depth")


@pytest.mark.parametrize(
    "against, baseline, message",
    [
        ("depth", None, "no run records a number for 'depth'"),
        ("density", "no-such-row", "no row named 'no-such-row'"),
        (None, "sparse-momentum", "--baseline needs --against"),
    ],
)
def test_a_mistyped_setting_or_row_writes_nothing(sweep, tmp_path, against, baseline, message):
    out = tmp_path / "report"
    with pytest.raises(UserError, match=message):
        write_report(sweep, out, against=against, baseline=baseline)
    assert not out.exists() or not any(out.iterdir())  # no figures without their report


def test_only_selects_runs_by_setting_before_anything_is_averaged(sweep, tmp_path, capsys):
    report = write_report(sweep, tmp_path / "a", only=["method=set"]).read_text()
    assert "| set |" in report and "| sparse-momentum |" not in report
    both = write_report(sweep, tmp_path / "b", only=["density=0.05", "seed=0"]).read_text()
    assert "2.50" not in both and "(2)" not in both  # the 1 % runs and seed 1 left out
    assert main(["report", str(sweep), "--out", str(tmp_path / "c"), "--only", "method=rigl"]) == 2
    assert "no finished run under" in capsys.readouterr().err
    with pytest.raises(UserError, match="--only takes KEY=VALUE"):
        write_report(sweep, tmp_path / "d", only=["method"])


def test_a_language_model_report_speaks_of_bits_per_character(tmp_path):
    """Lower-is-better bits per character in the table, the learning curve and the captions."""
    root = tmp_path / "runs"
    for density, seed, bpc in [(0.1, 0, 3.0), (0.1, 1, 3.2), (0.2, 0, 2.9)]:
        folder = root / "gpt-char/shakespeare-char/sparse-momentum" / f"d{density}" / f"s{seed}"
        run = write_run(folder, "sparse-momentum", density, seed, 60.0)
        summary = json.loads((run / "summary.json").read_text())
        summary.update(model="gpt-char", dataset="shakespeare-char", test_bpc=bpc)
        (run / "summary.json").write_text(json.dumps(summary))
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        lines = [json.dumps({**r, "validation_bpc": bpc + 1 / r["epoch"]}) for r in records]
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    report = write_report(root).read_text()
    assert "Rows: test bits per character, mean ± SE" in report
    assert table_rows(report)["sparse-momentum"] == ["3.10 ± 0.10 (2)", "2.90 (1)"]
    assert "(bits per character for language models)" in report
    assert "![Validation bits per character per epoch, 10 % density]" in report
    assert "![Test bits per character vs density]" in report
    assert (root / "gpt-char_shakespeare-char_validation-bpc_d0.1.png").exists()
    assert not list(root.glob("*validation-accuracy*"))


def test_error_against_parameter_count_names_the_models_and_writes_counts_in_full(tmp_path):
    root = tmp_path / "sweep"
    for model, parameters, error in [("mlp-100x2", 89_610, 2.0), ("mlp-1000x2", 1_796_010, 1.5)]:
        run = write_run(root / model / "mnist" / "sparse-momentum" / "d0.05" / "s0",
                        "sparse-momentum", 0.05, 0, error)  # fmt: skip
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(
            json.dumps({**summary, "model": model, "parameters": parameters})
        )
    # a run that diverged has no summary, so no parameter count: listed, not placed
    write_diverged_run(root / "mlp-100x2" / "mnist" / "sparse-momentum" / "d0.05" / "s1",
                       "sparse-momentum", 0.05, 1, model="mlp-100x2")  # fmt: skip
    report = write_report(root, against="parameters").read_text()
    assert "| row | parameters = 89,610 | parameters = 1,796,010 | spread |" in report
    assert "Models by parameters: mlp-100x2: 89,610; mlp-1000x2: 1,796,010." in report
