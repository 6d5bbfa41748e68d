"""The Lightning callback: exact counts after every optimizer step (gradient accumulation 2,
clipping on), mask updates, a bit-identical resume from a Lightning checkpoint, and the same
masks on two DDP processes."""

import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")

from sparsemomentum.integrations.lightning import SparseTrainingCallback  # noqa: E402


class Classifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))

    def training_step(self, batch, batch_idx):
        inputs, labels = batch
        return nn.functional.cross_entropy(self.net(inputs), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def loader():
    generator = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(
        torch.randn(160, 20, generator=generator), torch.randint(0, 5, (160,), generator=generator)
    )
    return torch.utils.data.DataLoader(data, batch_size=8)  # 20 batches, 10 optimizer steps


class Watch(pl.Callback):
    def __init__(self, sparse):
        self.sparse, self.checked = sparse, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        sparsifier = self.sparse.sparsifier
        assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()
        for name, weight in sparsifier.weights.items():
            assert torch.all(weight[~sparsifier.masks[name]] == 0), name
        self.checked += 1


class StopAfterFirstEpoch(pl.Callback):
    """Interrupts a run after its first epoch (whose checkpoint is written)."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def fit(root, epochs=3, resume=None, interrupt=False, **trainer_options):
    sparse = SparseTrainingCallback(density=0.2, update_interval=4)
    watch = Watch(sparse)
    callbacks = [sparse, watch] + ([StopAfterFirstEpoch()] if interrupt else [])
    trainer = pl.Trainer(
        max_epochs=epochs, accumulate_grad_batches=2, gradient_clip_val=1.0, accelerator="cpu",
        callbacks=callbacks, default_root_dir=str(root), logger=False,
        enable_progress_bar=False, enable_model_summary=False, deterministic=True,
        **{"devices": 1, **trainer_options},
    )  # fmt: skip
    model = Classifier()
    trainer.fit(model, loader(), ckpt_path=resume)
    return model, sparse, watch, trainer


def test_masks_stay_exact_through_accumulation_and_clipping(tmp_path):
    model, sparse, watch, _ = fit(tmp_path, epochs=2)
    # updates after steps 4, 8, 12 and 16; the one the 20th would start is past the run's end
    assert sparse.sparsifier.step_count == 20 and sparse.sparsifier.update_count == 4
    assert watch.checked == 40  # every batch, including the accumulating ones


def test_resuming_from_a_lightning_checkpoint_is_bit_identical(tmp_path):
    whole, whole_sparse, _, _ = fit(tmp_path / "whole", epochs=3)
    fit(tmp_path / "cut", epochs=3, interrupt=True)  # stops after epoch 1, its checkpoint kept
    checkpoint = next((tmp_path / "cut").rglob("*.ckpt"))
    resumed, resumed_sparse, _, _ = fit(tmp_path / "cut", epochs=3, resume=str(checkpoint))
    for name, mask in whole_sparse.sparsifier.masks.items():
        assert torch.equal(mask, resumed_sparse.sparsifier.masks[name])
    for (name, a), (_, b) in zip(whole.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), name


class RecordMasks(pl.Callback):
    """Each process writes its first and last masks and its update count."""

    def __init__(self, sparse, folder):
        self.sparse, self.folder, self.initial = sparse, folder, None

    def on_train_start(self, trainer, pl_module):
        self.initial = {name: mask.clone() for name, mask in self.sparse.sparsifier.masks.items()}

    def on_train_end(self, trainer, pl_module):
        sparsifier = self.sparse.sparsifier
        record = {"masks": sparsifier.masks, "initial": self.initial}
        record["updates"] = sparsifier.update_count
        torch.save(record, self.folder / f"rank{trainer.global_rank}.pt")


@pytest.mark.parametrize("method", ["sparse-momentum", "set"])
def test_masks_are_identical_on_two_ddp_processes(tmp_path, method):
    sparse = SparseTrainingCallback(method=method, density=0.2, update_interval=2)
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", devices=2, strategy="ddp_spawn",
        callbacks=[sparse, RecordMasks(sparse, tmp_path)], default_root_dir=str(tmp_path),
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(Classifier(), loader())  # each process sees its half of every epoch
    first, second = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert first["updates"] == second["updates"] == 9  # 10 steps per process, every 2nd
    for name, mask in first["masks"].items():
        assert torch.equal(mask, second["masks"][name]), name
    moved = [not torch.equal(first["initial"][name], mask) for name, mask in first["masks"].items()]
    assert any(moved)  # the updates did move weights, on both processes alike
