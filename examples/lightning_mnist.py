"""Sparse momentum in Lightning: LeNet-300-100 on MNIST with 5 % of its weights.

    pip install 'sparsemomentum[lightning]'
    python examples/lightning_mnist.py --data-dir ../shared/data
    python examples/lightning_mnist.py --data-dir ../shared/data --devices 2   # DDP on CPU

The LightningModule is ordinary; the one sparse line is the callback. It builds the
sparsifier from the module and its optimizer when fitting starts, keeps masked weights zero
after every optimizer step (gradient accumulation and clipping included), updates the masks
each epoch, logs the density, and keeps its state in Lightning's checkpoints.
"""

import argparse

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import sparsemomentum as sm
from sparsemomentum.data import data_root, load_dataset
from sparsemomentum.integrations.lightning import SparseTrainingCallback


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = sm.create_model("lenet300-100")

    def training_step(self, batch, batch_index):
        inputs, labels = batch
        loss = F.cross_entropy(self.net(inputs), labels)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def test_step(self, batch, batch_index):
        inputs, labels = batch
        accuracy = (self.net(inputs).argmax(1) == labels).float().mean()
        self.log("test_accuracy", 100 * accuracy, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(
            self.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding mnist/ (default: the library's)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--devices", type=int, default=1, help="CPU processes (DDP when > 1)")
    parser.add_argument("--limit-batches", type=int, help="fewer batches, for a quick look")
    args = parser.parse_args()
    pl.seed_everything(0)
    mnist = load_dataset("mnist", data_root(args.data_dir))
    train = DataLoader(TensorDataset(mnist.train.inputs, mnist.train.labels), 100, shuffle=True)
    test = DataLoader(TensorDataset(mnist.test.inputs, mnist.test.labels), 1000)

    sparse = SparseTrainingCallback(method="sparse-momentum", density=0.05)
    trainer = pl.Trainer(
        max_epochs=args.epochs, accelerator="cpu", devices=args.devices, callbacks=[sparse],
        strategy="ddp_spawn" if args.devices > 1 else "auto", logger=False,
        enable_checkpointing=False, limit_train_batches=args.limit_batches,
        enable_progress_bar=args.limit_batches is None,
    )  # fmt: skip
    model = Classifier()
    trainer.fit(model, train)
    trainer.test(model, test, verbose=False)
    print(f"test accuracy {trainer.callback_metrics['test_accuracy']:.2f} %")
    if sparse.sparsifier is not None:  # in this process (with ddp_spawn: the workers')
        print(sparse.sparsifier.summary())


if __name__ == "__main__":
    main()
