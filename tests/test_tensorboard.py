"""--tensorboard: the per-epoch record as TensorBoard scalars, equal to metrics.jsonl, and a
resumed run's events replace those of the epochs it trains again."""

import json

import pytest

import sparsemomentum as sm
from sparsemomentum.cli import main
from sparsemomentum.runs import RunFolder

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def scalars(run):
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_tensorboard_scalars_equal_the_metrics_file(tmp_path, data_dir):
    out = tmp_path / "run"
    arguments = ["train", "--epochs", "2", "--tensorboard", "--out", str(out)]
    assert main([*arguments, "--data-dir", str(data_dir)]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = scalars(out)
    for record in records:
        step = record["epoch"]
        assert dict(logged["validation_accuracy"])[step] == pytest.approx(
            record["validation_accuracy"], rel=1e-6
        )
        for layer, density in record["layer_density"].items():
            assert dict(logged[f"layer_density/{layer}"])[step] == pytest.approx(density)
    assert [step for step, _ in logged["train_loss"]] == [1, 2]


def test_a_resumed_run_replaces_the_events_of_the_epochs_it_trains_again(tmp_path):
    folder = RunFolder(tmp_path / "run", tensorboard=True)
    folder.write_json(RunFolder.CONFIG, {})
    for epoch in (1, 2, 3):
        folder.append_metrics({"epoch": epoch, "train_loss": float(epoch)})
    folder.close()
    resumed = RunFolder(tmp_path / "run", resume=True, tensorboard=True)
    for epoch in (2, 3):  # resumed from the checkpoint at the start of epoch 2
        resumed.append_metrics({"epoch": epoch, "train_loss": 10.0 * epoch})
    resumed.close()
    assert scalars(tmp_path / "run")["train_loss"] == [(1, 1.0), (2, 20.0), (3, 30.0)]


def test_without_the_package_the_option_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch.utils.tensorboard", None)
    with pytest.raises(sm.UserError, match=r"pip install 'sparsemomentum\[tensorboard\]'"):
        RunFolder(tmp_path / "run", tensorboard=True)
    assert not (tmp_path / "run").exists()
