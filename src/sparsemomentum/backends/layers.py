"""Switching a model's masked layers onto the sparse kernels, and back.

Each switched module gets an instance attribute ``forward`` that calls the sparse kernel of
its kind (``sparse_linear`` for ``nn.Linear``, ``sparse_conv`` for ``nn.Conv2d``), so its
parameters, names, state_dict and hooks stay exactly as they were, and the optimizer keeps
seeing dense Parameters. Where a sparse kernel would lose, the layer stays dense and the
handle says why: sparse momentum fills some layers almost completely, so that decision is
taken again at every mask update.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .sparse_conv import SparseConvLayout, masked_conv2d
from .sparse_linear import SparseLinearLayout, autocast_enabled, masked_linear

Layout = SparseLinearLayout | SparseConvLayout

# The density above which a layer stays dense unless the caller says otherwise: measured on a
# 2-core CPU (benchmarks/kernels.py, docs/speed.md), CSR products stop winning near 20 %; the
# direct convolution still ran 2x faster than torch's at 30 % (LeNet-5's conv2) and 1.2x at 50 %.
DEFAULT_MAX_DENSITY = {nn.Linear: 0.2, nn.Conv2d: 0.5}
# Linear layers smaller than this stay dense: fixed per-call costs outweigh the saving.
DEFAULT_MIN_WEIGHTS = 16384


def _kernel_kind(module: nn.Module) -> str | None:
    """Why ``module`` cannot run on a sparse kernel at all, or None when it can."""
    if type(module) is nn.Linear:
        return None
    if type(module) is nn.Conv2d:
        if module.groups != 1:
            return (
                f"grouped convolution (groups={module.groups}): the sparse convolution kernel "
                "handles groups=1 only"
            )
        if module.padding_mode != "zeros":
            return (
                f"padding_mode={module.padding_mode!r}: the sparse convolution kernel pads with "
                "zeros only"
            )
        return None
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        return (
            f"subclass of nn.{type(module).__mro__[1].__name__}: it may redefine forward(), so "
            "only the plain class is switched"
        )
    return f"{type(module).__name__}: no sparse kernel for this module type"


class _SparseForward:
    """Stands in for one module's ``forward``. With no layout (the layer is too small or too
    dense for sparse kernels to win) it is the module's own dense forward."""

    def __init__(self, module: nn.Linear | nn.Conv2d, dense_weight_gradient: bool) -> None:
        self.module = module
        self.layout: Layout | None = None
        self.dense_weight_gradient = dense_weight_gradient
        self.reason: str | None = None  # why the layer is on the dense path, when it is

    def build(self, mask: torch.Tensor) -> Layout:
        module = self.module
        if isinstance(module, nn.Conv2d):
            return SparseConvLayout(
                module.weight, mask, module.stride, module.padding, module.dilation
            )
        return SparseLinearLayout(module.weight, mask)

    def __call__(self, input: torch.Tensor) -> torch.Tensor:
        module = self.module
        if self.layout is None or module.weight.dtype != torch.float32:
            # the class's own forward (the instance attribute is this object)
            return type(module).forward(module, input)
        kernel = masked_conv2d if isinstance(self.layout, SparseConvLayout) else masked_linear
        if input.dtype == torch.float32 and not autocast_enabled(input.device.type):
            return kernel(
                input, module.weight, module.bias, self.layout, self.dense_weight_gradient
            )
        # Mixed precision: the sparse kernels compute in float32, the dense layers around them
        # in bfloat16/float16 as autocast decides; the next layer casts the float32 output.
        with torch.autocast(input.device.type, enabled=False):
            return kernel(
                input.float(), module.weight, module.bias, self.layout, self.dense_weight_gradient
            )


class SparseLayersHandle:
    """The layers :func:`sparsify_layers` switched, and the controls a training loop needs.

    ``sparse``: mask name -> module currently on the sparse path; ``dense``: mask name -> why
    it is on the dense path. A layer moves between the two at :meth:`rebuild` when its
    density crosses ``max_density`` (None: :data:`DEFAULT_MAX_DENSITY` of its kind).
    """

    def __init__(
        self,
        forwards: dict[str, _SparseForward],
        dense: dict[str, str],
        max_density: float | None,
        min_weights: int,
    ) -> None:
        self._forwards = forwards
        self._fixed_dense = dense
        self.max_density = max_density
        self.min_weights = min_weights
        self.sparse: dict[str, nn.Module] = {}
        self.dense: dict[str, str] = {}
        self._classify()

    def _why_dense(self, module: nn.Module, mask: torch.Tensor) -> str | None:
        if module.weight.dtype != torch.float32:
            return f"{str(module.weight.dtype)[6:]} weights: the sparse kernels compute in float32"
        # A convolution applies each weight at every output position, which amortises the per-call
        # costs that make tiny Linear layers lose; the size rule is for Linear layers only.
        if isinstance(module, nn.Linear) and mask.numel() < self.min_weights:
            return (
                f"{mask.numel():,} weights: fixed per-call costs outweigh the saving below "
                f"{self.min_weights:,}"
            )
        density = int(torch.count_nonzero(mask)) / mask.numel()
        limit = (
            self.max_density if self.max_density is not None else DEFAULT_MAX_DENSITY[type(module)]
        )
        if density > limit:
            return f"density {density:.2%} is above {limit:.0%}, where dense kernels are faster"
        return None

    def _classify(self) -> None:
        self.sparse = {name: f.module for name, f in self._forwards.items() if f.layout is not None}
        self.dense = dict(self._fixed_dense)
        self.dense.update(
            {name: f.reason for name, f in self._forwards.items() if f.layout is None}
        )

    def rebuild(self, masks: dict[str, torch.Tensor]) -> None:
        """New layouts after a mask update (also after moving the model to another device or dtype).

        New layout objects each time: a graph built before keeps its own.
        """
        missing = [name for name in self._forwards if name not in masks]
        if missing:
            raise UserError(
                f"rebuild needs a mask for every sparse layer; {missing[0]!r} has none."
            )
        for name, forward in self._forwards.items():
            forward.reason = self._why_dense(forward.module, masks[name])
            forward.layout = None if forward.reason else forward.build(masks[name])
        self._classify()

    def layout(self, name: str) -> Layout:
        """The current layout of the sparse layer whose mask is ``name``."""
        return self._forwards[name].layout

    def set_dense_weight_gradient(self, enabled: bool) -> None:
        """Full dense dW (momentum window before a mask update) or dW at the non-zeros only."""
        for forward in self._forwards.values():
            forward.dense_weight_gradient = enabled

    def remove(self) -> None:
        """Put every switched module back on its own dense forward."""
        for forward in self._forwards.values():
            if forward.module.__dict__.get("forward") is forward:
                del forward.module.forward
        self._forwards.clear()
        self.sparse.clear()


def sparsify_layers(
    model: nn.Module,
    masks: dict[str, torch.Tensor],
    dense_weight_gradient: bool = False,
    max_density: float | None = 1.0,
    min_weights: int = 0,
) -> SparseLayersHandle:
    """Run every masked plain ``nn.Linear`` and ``nn.Conv2d`` (groups=1, zero padding) of ``model``
    on sparse kernels.

    ``masks`` maps parameter names (``"fc1.weight"``, as ``Sparsifier.masks``) to boolean
    masks. Other masked modules stay dense, and so do Linear layers with fewer than
    ``min_weights`` weights and any layer with a density above ``max_density`` (None: the
    measured break-even of its kind, :data:`DEFAULT_MAX_DENSITY`; re-decided at every rebuild);
    ``handle.dense`` says why. Call ``handle.rebuild(sparsifier.masks)`` after every mask update,
    and after moving the model to another device or dtype.
    """
    modules = dict(model.named_modules())
    holders: dict[int, int] = {}  # parameter -> how many modules hold it (weight tying)
    for module in model.modules():
        for parameter in module._parameters.values():
            holders[id(parameter)] = holders.get(id(parameter), 0) + 1
    forwards: dict[str, _SparseForward] = {}
    dense: dict[str, str] = {}
    for name, mask in masks.items():
        module_name, _, parameter = name.rpartition(".")
        module = modules.get(module_name)
        tensor = getattr(module, parameter, None)
        if not isinstance(tensor, nn.Parameter):
            raise UserError(
                f"the mask {name!r} names no parameter of this model; pass the masks of this model."
            )
        reason = _kernel_kind(module)
        if parameter != "weight":  # attention's fused projection, a recurrent matrix
            reason = f"{type(module).__name__}.{parameter}: computed inside torch's fused kernel"
        elif holders[id(tensor)] > 1:
            # the other holder computes a dense gradient at the missing positions, which the
            # values-only step and the momentum bookkeeping of a sparse layer assume zero
            reason = f"shared by {holders[id(tensor)]} modules (weight tying)"
        if reason is not None:
            dense[name] = reason
            continue
        if "forward" in module.__dict__:
            raise UserError(
                f"{module_name or 'the model'} already runs on sparse kernels (another sparsifier "
                "or handle switched it); use one sparsifier per model, or call remove() on the "
                "earlier handle first."
            )
        forwards[name] = _SparseForward(module, dense_weight_gradient)
    handle = SparseLayersHandle(forwards, dense, max_density, min_weights)
    handle.rebuild({name: masks[name] for name in forwards})
    for forward in forwards.values():
        forward.module.forward = forward
    return handle
