"""SGD on the active values only: the optimizer step of sparse layers in O(nnz), not O(out x in).

With sparse kernels the forward and backward cost scales with the non-zeros, but a dense
``optimizer.step()`` still reads and writes every element of the weight, its gradient and
its momentum (several passes over 64 MB for a 4096x4096 layer): that step, not the
kernels, then bounds the speed-up. Between momentum windows the dense step does nothing a
values-only step does not do:

* an active weight gets torch's SGD update (weight decay, momentum, dampening, Nesterov),
  computed on its value alone;
* a missing weight has gradient 0 (dW is computed at the non-zeros only) and weight 0, so
  its momentum only decays, ``buf <- momentum x buf``, and whatever the step did to the
  weight is undone by re-masking.

So the active values are stepped here, and the decay of missing momenta is counted and
applied at once (``buf x momentum^k``) before anything reads it: before a dense step
(the momentum window) and before a mask update. The other parameters (biases, layers left
dense) take the same compiled update in one pass each, where torch's single-tensor SGD
dispatches four operations a tensor. Weights equal torch's SGD to the bit (the kernels
round as torch does); the missing momenta differ by the rounding of the power. Adam,
AdamW and SGD with ``maximize`` take torch's own dense step.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.optimizer_state import param_group_index
from . import compiled
from .layers import SparseLayersHandle


def supports(optimizer: torch.optim.Optimizer) -> bool:
    return type(optimizer) is torch.optim.SGD and not any(
        group.get("maximize") for group in optimizer.param_groups
    )


class ValuesOnlySGD:
    """Steps the sparse-kernel layers' weights of an SGD optimizer at their non-zeros, and its
    other parameters in one compiled pass each."""

    def __init__(
        self,
        optimizer: torch.optim.SGD,
        kernels: SparseLayersHandle,
        weights: dict[str, torch.nn.Parameter],
    ) -> None:
        self.optimizer = optimizer
        self.kernels = kernels
        self.params = {
            name: weights[name]
            for name in list(kernels.sparse) + list(kernels.dense)
            if name in weights
        }
        # Group positions, not group dicts: optimizer.load_state_dict replaces the dicts (a resume).
        self.group_index = {
            name: param_group_index(optimizer, param) for name, param in self.params.items()
        }
        self.pending_decay = {name: 0 for name in self.params}

    def group(self, name: str) -> dict[str, Any]:
        return self.optimizer.param_groups[self.group_index[name]]

    @torch.no_grad()
    def step(self, dense_gradient: bool = False) -> None:
        """This class's O(nnz) update for the layers on sparse kernels, the compiled dense update
        for the parameters it can take, torch's step (still called: its hooks, and the step
        schedulers count) for the rest.

        ``dense_gradient``: the gradients are dense (the momentum window), so the missing
        weights' momenta take their step too, exactly as torch's dense step would: one pass
        over the momentum buffer, where torch's step and the re-masking after it make five
        over the weight, gradient and buffer.
        """
        if dense_gradient:
            self.flush()  # the missing momenta must be current before they step
        sparse = {name: self.params[name] for name in self.kernels.sparse}
        plain = self._plain_parameters({id(param) for param in sparse.values()})
        taken = [*sparse.values(), *(param for param, _ in plain)]
        gradients = [param.grad for param in taken]
        for param in taken:
            param.grad = None  # torch's SGD skips parameters without a gradient
        try:
            self.optimizer.step()  # what is left (and its hooks, and what schedulers count)
        finally:
            for param, gradient in zip(taken, gradients):
                param.grad = gradient
        for name, param in sparse.items():
            if param.grad is not None:
                self._step_values(name, param, param.grad, dense_gradient)
        for param, group in plain:
            self._step_plain(param, group)

    def _plain_parameters(self, sparse: set[int]) -> list[tuple[torch.Tensor, dict[str, Any]]]:
        """The other parameters the compiled step can take (contiguous float32 CPU tensors with a
        dense gradient), with their groups: torch's per-tensor SGD dispatches four operations
        each, a tenth of a millisecond a step on LeNet-300-100's biases and output layer."""
        if not compiled.usable():
            return []
        return [
            (param, group)
            for group in self.optimizer.param_groups
            for param in group["params"]
            if id(param) not in sparse
            and param.grad is not None
            and compiled.usable(param, param.grad)
            and not param.grad.is_sparse
            and param.is_contiguous()
            and param.grad.is_contiguous()
        ]

    def _step_plain(self, param: torch.Tensor, group: dict[str, Any]) -> None:
        """torch's SGD update of every element of ``param``, in one compiled pass."""
        buffer, first_step = self._momentum_buffer(param, group["momentum"])
        compiled.sgd_dense(
            param,
            param.grad,
            buffer,
            group["lr"],
            group["weight_decay"],
            group["momentum"],
            group["dampening"],
            group["nesterov"],
            first_step,
        )

    def _momentum_buffer(
        self, param: torch.Tensor, momentum: float
    ) -> tuple[torch.Tensor | None, bool]:
        """The parameter's momentum buffer (None without momentum) and whether this is torch's
        first step, where the buffer is made (zeros) and the step writes the gradient into it."""
        if not momentum:
            return None, False
        state = self.optimizer.state[param]
        if state.get("momentum_buffer") is not None:
            return state["momentum_buffer"], False
        state["momentum_buffer"] = torch.zeros_like(param)
        return state["momentum_buffer"], True

    def _step_values(
        self, name: str, param: torch.Tensor, gradient: torch.Tensor, dense_gradient: bool
    ) -> None:
        group = self.group(name)
        layout = self.kernels.layout(name)
        momentum = group["momentum"]
        buffer, first_step = self._momentum_buffer(param, momentum)
        if buffer is not None and not first_step and not dense_gradient:
            self.pending_decay[name] += 1  # the missing momenta owe one decay
        if (
            layout.compiled
            and compiled.usable(param, gradient)
            and param.is_contiguous()
            and gradient.is_contiguous()
        ):
            compiled.sgd(
                layout.offsets,
                layout.columns,
                param,
                gradient,
                buffer,
                group["lr"],
                group["weight_decay"],
                momentum,
                group["dampening"],
                group["nesterov"],
                first_step,
                dense_gradient,
            )
            return
        index = layout.flat_index
        weight = param.view(-1)
        values = weight.index_select(0, index)
        if (
            dense_gradient and momentum
        ):  # every position's momentum steps; a missing weight is 0, so d = g there
            direction = gradient.reshape(-1).add(weight, alpha=group["weight_decay"])
            if first_step:
                buffer.view(-1).copy_(direction)
            else:
                buffer.view(-1).mul_(momentum).add_(direction, alpha=1 - group["dampening"])
            direction = direction.index_select(0, index)
            moment = buffer.view(-1).index_select(0, index)
        else:
            direction = gradient.reshape(-1).index_select(0, index)
            if group["weight_decay"]:
                direction = direction.add(values, alpha=group["weight_decay"])
            if momentum:
                if first_step:
                    moment = direction.clone()
                else:
                    moment = (
                        buffer.view(-1)
                        .index_select(0, index)
                        .mul_(momentum)
                        .add_(direction, alpha=1 - group["dampening"])
                    )
                buffer.view(-1).index_copy_(0, index, moment)
        if momentum:
            direction = direction.add(moment, alpha=momentum) if group["nesterov"] else moment
        weight.index_copy_(0, index, values.sub_(direction, alpha=group["lr"]))

    @torch.no_grad()
    def flush(self) -> None:
        """Apply the momentum decay the missing weights are owed (before anything reads it)."""
        for name, steps in self.pending_decay.items():
            if steps == 0:
                continue
            buffer = self.optimizer.state[self.params[name]].get("momentum_buffer")
            if buffer is not None:
                index = self.kernels.layout(name).flat_index
                active = buffer.view(-1).index_select(0, index)
                buffer.mul_(self.group(name)["momentum"] ** steps)
                buffer.view(-1).index_copy_(0, index, active)
            self.pending_decay[name] = 0
