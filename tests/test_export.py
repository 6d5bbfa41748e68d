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


def _tampered(payload, change):
    import copy

    payload = copy.deepcopy(payload)
    change(payload)
    return payload


def _set(path, value):
    def change(payload):
        target = payload
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value(target[path[-1]]) if callable(value) else value

    return change


DELETE = object()
FC1 = ("tensors", "fc1.weight")
MALFORMED = {
    "a weight declared 10^6 x 10^6": (_set((*FC1, "shape"), [10**6, 10**6]), "has shape"),
    "values of shape (n, 1)": (_set((*FC1, "values"), lambda v: v[:, None]), "values of the"),
    "shape as an int": (_set((*FC1, "shape"), 300), "has shape 300"),
    "values as a list": (_set((*FC1, "values"), lambda v: v.tolist()), "values of the"),
    "missing values": (_set((*FC1, "values"), DELETE), "neither a tensor nor a CSR weight"),
    "a missing tensor": (_set(("tensors", "fc2.bias"), DELETE), "do not match the model"),
    "tensors as a list": (_set(("tensors",), []), "do not match the model"),
    "num_classes a string": (_set(("num_classes",), "10"), "number of classes is '10'"),
    "num_classes negative": (_set(("num_classes",), -3), "number of classes is -3"),
    "an unknown model": (_set(("model",), "lenet-9"), "names no registered model"),
    "int64 values": (_set((*FC1, "values"), lambda v: v.long()), "values of the"),
    "bool values": (_set((*FC1, "values"), lambda v: v > 0), "values of the"),
    "float indices": (_set((*FC1, "col_indices"), lambda v: v.float()), "col_indices of the"),
    "a dense tensor of another shape": (_set(("tensors", "fc2.bias"), torch.zeros(3)), "fc2.bias"),
    "duplicate column indices": (
        _set((*FC1, "col_indices"), lambda v: torch.cat([v[:1], v[:1], v[2:]])),
        "inconsistent indices",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_every_malformed_export_is_one_sentence(case, trained_run, tmp_path):
    export_run(trained_run, tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    change, message = MALFORMED[case]
    torch.save(_tampered(payload, change), tmp_path / "bad.pt")
    with pytest.raises(sm.UserError, match=message) as error:
        sm.load_exported(tmp_path / "bad.pt")
    assert len(str(error.value).splitlines()) == 1


def test_export_never_replaces_the_runs_own_files_and_says_when_a_run_is_unfinished(
    trained_run, tmp_path, capsys
):
    checkpoint = (trained_run / "checkpoint.pt").read_bytes()
    assert main(["export", str(trained_run), "--out", str(trained_run / "checkpoint.pt")]) == 2
    assert "would replace a file of the run folder" in capsys.readouterr().err
    assert (trained_run / "checkpoint.pt").read_bytes() == checkpoint
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.json", "checkpoint.pt"):
        (unfinished / name).write_bytes((trained_run / name).read_bytes())
    with pytest.warns(UserWarning, match="has not finished .* from the start of epoch 2"):
        export_run(unfinished, tmp_path / "early.pt")
    (unfinished / "checkpoint.pt").unlink()
    with pytest.raises(sm.UserError, match="has no checkpoint to export; train it first"):
        export_run(unfinished, tmp_path / "none.pt")


def test_safetensors_export_predicts_like_the_trained_model_and_other_tools_read_it(
    trained_run, tmp_path, data_dir
):
    safetensors = pytest.importorskip("safetensors.torch")
    out = tmp_path / "model.bin"
    assert main(["export", str(trained_run), "--out", str(out), "--format", "safetensors"]) == 0
    raw = safetensors.load_file(str(out))  # no sparsemomentum needed to read it
    assert raw["fc1.weight:values"].numel() == raw["fc1.weight:col_indices"].numel()
    assert raw["fc1.weight:crow_indices"].numel() == 301 and "fc1.bias" in raw
    state = load_checkpoint(trained_run)
    trained = sm.create_model("lenet300-100")
    trained.load_state_dict(state["model"])
    trained.eval()
    inputs = load_dataset("mnist", data_dir, download=False).test.inputs[:500]
    with torch.no_grad():
        assert torch.equal(sm.load_exported(out)(inputs), trained(inputs))
    size, dense = export_run(trained_run, tmp_path / "named.safetensors")  # format from name
    assert (tmp_path / "named.safetensors").read_bytes()[:2] != b"PK" and size < 0.15 * dense


def test_a_tampered_safetensors_export_is_refused_in_one_sentence(trained_run, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    from safetensors import safe_open

    from sparsemomentum.export import _digest

    path = tmp_path / "model.safetensors"
    export_run(trained_run, path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # one bit of the last tensor's bytes
    (tmp_path / "flipped.safetensors").write_bytes(bytes(data))
    with pytest.raises(sm.UserError, match="do not match their SHA-256"):
        sm.load_exported(tmp_path / "flipped.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(sm.UserError, match="is not a readable sparsemomentum export"):
        sm.load_exported(tmp_path / "cut.safetensors")
    # a consistent file whose columns run out of range (digest recomputed by a forger)
    tensors = safetensors.load_file(str(path))
    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata()
    tensors["fc1.weight:col_indices"][0] = 10**6
    metadata["sha256"] = _digest(tensors)
    safetensors.save_file(tensors, str(tmp_path / "forged.safetensors"), metadata=metadata)
    with pytest.raises(sm.UserError, match="'fc1.weight' has inconsistent indices"):
        sm.load_exported(tmp_path / "forged.safetensors")
