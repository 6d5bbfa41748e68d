"""Run under torchrun by test_distributed.py: one rank of a small sparse-momentum training.

Writes, from every rank, its final masks and weights to OUT/rank<r>.pt. With MODE=diverge,
rank 1 flips one mask position before an update, which the mask check must catch.
"""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import sparsemomentum as sm
from sparsemomentum.train import distributed


def main(out: Path, mode: str) -> None:
    torch.set_num_threads(1)
    group = distributed.setup(torch.device("cpu"))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparsifier = sm.SparseMomentum(
        model,
        optimizer,
        density=0.2,
        total_steps=200,
        update_interval=25,
        mask_check=lambda masks: distributed.check_masks_agree(masks, group),
    )
    network = DistributedDataParallel(model)
    data = torch.Generator().manual_seed(1)
    try:
        for step in range(100):
            inputs, targets = (
                torch.randn(32, 20, generator=data),
                torch.randn(32, 5, generator=data),
            )
            inputs, targets = distributed.shard(inputs, targets, group)
            optimizer.zero_grad()
            nn.functional.mse_loss(network(inputs), targets).backward()
            if mode == "diverge" and group.rank == 1 and step == 49:
                sparsifier.masks["0.weight"].view(-1)[0] ^= True
            sparsifier.step()
    except distributed.MaskDivergence as error:
        (out / f"error{group.rank}.txt").write_text(str(error))
        return
    finally:
        torch.save(
            {
                "masks": sparsifier.masks,
                "weights": model.state_dict(),
                "updates": sparsifier.update_count,
            },
            out / f"rank{group.rank}.pt",
        )
    distributed.teardown(group)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "agree")
