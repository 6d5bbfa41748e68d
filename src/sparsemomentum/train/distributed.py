"""Several processes with PyTorch's own engine (torchrun + DistributedDataParallel).

Masks must be identical on every rank at every moment. They start identical because every
rank draws them from the same seed; they stay identical because every statistic an update
reads is (weights, momentum and gradients after DDP's all-reduce, a generator seeded the
same everywhere). :func:`check_masks_agree` verifies this cheaply at each update and stops
the run with a clear error instead of training on with diverged masks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.distributed_c10d import _get_default_store

from ..errors import UserError


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: torch.device) -> ProcessGroup:
    """Join the group torchrun describes in the environment; a single process otherwise.

    On CUDA each process takes the GPU of its local rank.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return ProcessGroup(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), device)


def teardown(group: ProcessGroup) -> None:
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard(
    inputs: torch.Tensor, labels: torch.Tensor, group: ProcessGroup
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's part of a global batch: every sample is seen by exactly one rank.

    Shards differ by one sample when the batch does not divide evenly (a rank may get
    none); the loop weights each rank's loss so that DDP's average is the global mean.
    """
    if not group.distributed:
        return inputs, labels
    return inputs[group.rank :: group.world_size], labels[group.rank :: group.world_size]


def mask_checksum(masks: dict[str, torch.Tensor]) -> str:
    """Count and index sum of the active positions of every mask: short, cheap to compare."""
    parts = []
    for mask in masks.values():
        positions = mask.flatten().nonzero().flatten()
        parts.append(f"{positions.numel()}:{int(positions.sum())}")
    return ",".join(parts)


def check_masks_agree(masks: dict[str, torch.Tensor], group: ProcessGroup) -> None:
    """Stop the run if any rank's masks differ from rank 0's.

    The checksums travel through the process group's key-value store, not a collective:
    gloo lets go of a collective's tensors on its own worker thread, which must take the
    GIL to do so, and when that happens while the interpreter shuts down (a check at the
    last step, then exit) the process aborts (seen as SIGABRT in about 1 run in 90 on a
    loaded machine). A store exchange runs entirely in the calling thread.
    """
    if not group.distributed:
        return
    store = dist.PrefixStore("sparsemomentum/mask-check", _get_default_store())
    check = store.add(f"count/{group.rank}", 1)  # every rank checks at the same updates
    store.set(f"{check}/{group.rank}", mask_checksum(masks))
    checksums = [store.get(f"{check}/{rank}") for rank in range(group.world_size)]  # waits
    disagreeing = [rank for rank, checksum in enumerate(checksums) if checksum != checksums[0]]
    if disagreeing:
        raise MaskDivergence(
            f"the masks of rank(s) {disagreeing} differ from rank 0's after a mask update; the run "
            "is stopped so no rank trains on a different mask (check that every rank uses the "
            "same seed and code)."
        )


class MaskDivergence(UserError):
    """Ranks hold different masks: training on would silently train different networks."""
