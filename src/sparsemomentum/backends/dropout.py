"""Dropout with a mask drawn in parallel from a counter-based hash (``csrc/dropout.c``).

torch's CPU dropout draws its Bernoulli mask serially, which on the wide residual networks
cost a quarter of a sparse training step and a twelfth of a dense one (WRN-16-8 at batch
128: 550 ms of bernoulli_ per step). :func:`dropout` keeps each element with probability
1 - p, independently, from ``hash(seed, index)``, where ``seed`` is drawn from torch's
generator, so runs are reproducible from ``torch.manual_seed``; the backward pass recomputes
the mask from the seed. Not float32 on the CPU, or no compiler: ``F.dropout``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from . import compiled


class _HashDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, keep: float, seed: int) -> torch.Tensor:
        ctx.keep, ctx.seed = keep, seed
        source = input.contiguous()
        return compiled.dropout(source, torch.empty_like(source), seed, keep)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad = grad_output.contiguous()
        return compiled.dropout(grad, torch.empty_like(grad), ctx.seed, ctx.keep), None, None


def dropout(input: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(input, p, training)``, with the hash mask where the compiled kernel runs."""
    if not training or p == 0.0:
        return input
    if p >= 1.0 or not compiled.usable(input):
        return F.dropout(input, p, training)
    seed = int(torch.randint(0, 2**62, (1,)))
    return _HashDropout.apply(input, 1.0 - p, seed)


class Dropout(nn.Dropout):
    """``nn.Dropout`` drawing its mask with :func:`dropout`: same distribution, another
    random stream, parallel."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout(input, self.p, self.training)
