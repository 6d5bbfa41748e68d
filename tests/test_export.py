import pytest
import torch

import sparsemomentum as sm
from sparsemomentum.cli import main
from sparsemomentum.data import load_dataset
from sparsemomentum.export import export_run
from sparsemomentum.runs import load_checkpoint


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("export") / "run"
    assert (
        main(
            [
                "train",
                "--epochs",
                "1",
                "--batch-size",
                "500",
                "--out",
                str(out),
                "--data-dir",
                str(data_dir),
            ]
        )
        == 0
    )
    return out


def test_exported_model_predicts_exactly_like_the_trained_one_and_is_small(
    trained_run, tmp_path, data_dir, capsys
):
    assert main(["export", str(trained_run), "--out", str(tmp_path / "model.pt")]) == 0
    assert "of the dense model's" in capsys.readouterr().out
    size, dense = export_run(trained_run, tmp_path / "again.pt")
    assert size < 0.15 * dense  # 5 % of the weights as values + int32 column indices
    state = load_checkpoint(trained_run)
    trained = sm.create_model("lenet300-100")
    trained.load_state_dict(state["model"])
    trained.eval()
    loaded = sm.load_exported(tmp_path / "model.pt")
    inputs = load_dataset("mnist", data_dir, download=False).test.inputs[:500]
    with torch.no_grad():
        assert torch.equal(loaded(inputs), trained(inputs))


def test_export_errors_are_one_sentence(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "m.pt")]) == 2
    assert "is not a run folder with a readable config.json" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(sm.UserError, match="is not a readable sparsemomentum export"):
        sm.load_exported(tmp_path / "junk.pt")
    with pytest.raises(sm.UserError, match="no exported model at"):
        sm.load_exported(tmp_path / "missing.pt")


def test_damaged_indices_are_refused(trained_run, tmp_path):
    export_run(trained_run, tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    payload["tensors"]["fc1.weight"]["col_indices"][0] = 10**6
    torch.save(payload, tmp_path / "damaged.pt")
    with pytest.raises(
        sm.UserError, match="the sparse weight 'fc1.weight' has inconsistent indices"
    ):
        sm.load_exported(tmp_path / "damaged.pt")
