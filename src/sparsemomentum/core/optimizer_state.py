"""The one place that knows where optimizers keep their momentum.

Sparse momentum reads the exponentially smoothed gradient of every weight, active or
missing. For SGD this is the momentum buffer; for Adam and AdamW the paper uses the
first moment normalised by the second, exp_avg / (sqrt(exp_avg_sq) + eps), so that the
statistic has the scale of an update rather than of a raw gradient.
"""

from __future__ import annotations

import torch

from ..errors import UserError


def check_has_momentum(optimizer: torch.optim.Optimizer) -> None:
    """Refuse optimizers whose state holds no smoothed gradient, before training starts."""
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return
    if isinstance(optimizer, torch.optim.SGD):
        if all(group.get("momentum", 0) > 0 for group in optimizer.param_groups):
            return
        raise UserError(
            "momentum-based growth or redistribution needs SGD with momentum > 0; "
            "set momentum (e.g. 0.9) or choose growth='random'/'gradient' and "
            "redistribution='magnitude'/'nonzero'/'none'."
        )
    raise UserError(
        "momentum-based growth or redistribution supports SGD, Adam and AdamW, not "
        f"{type(optimizer).__name__}; use one of those or choose growth='random'/'gradient' and "
        "redistribution='magnitude'/'nonzero'/'none'."
    )


def momentum_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> torch.Tensor:
    """The smoothed gradient of ``param``; zeros if the optimizer has no state for it yet."""
    state = optimizer.state.get(param, {})
    if "exp_avg" in state and "exp_avg_sq" in state:
        eps = optimizer.param_groups[param_group_index(optimizer, param)].get("eps", 1e-8)
        return state["exp_avg"] / (state["exp_avg_sq"].sqrt() + eps)
    buffer = state.get("momentum_buffer")
    if buffer is not None:
        return buffer
    return torch.zeros_like(param)


def param_group_index(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> int:
    """Position of the parameter group holding ``param`` (the sparsifier checked it is held)."""
    return next(
        i
        for i, group in enumerate(optimizer.param_groups)
        if any(p is param for p in group["params"])
    )


@torch.no_grad()
def reset_state_at(
    optimizer: torch.optim.Optimizer, param: torch.Tensor, positions: torch.Tensor
) -> None:
    """Zero every per-element optimizer buffer of ``param`` at ``positions`` (a boolean mask).

    RigL starts grown weights from a clean slate; sparse momentum does not call this.
    """
    for value in optimizer.state.get(param, {}).values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            value.masked_fill_(positions, 0)
