"""The compiled kernels against torch's dense arithmetic, and what happens without a compiler."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsemomentum.backends import SparseLinearLayout, compiled

pytestmark = pytest.mark.skipif(
    compiled.library() is None, reason="no C compiler: the compiled kernels are not built"
)


def random_mask(out_features, in_features, density, generator):
    return torch.rand(out_features, in_features, generator=generator) < density


@settings(max_examples=40, deadline=None)
@given(
    out_features=st.integers(1, 70),
    in_features=st.integers(1, 70),
    batch=st.integers(1, 40),
    density=st.floats(0.0, 1.0),
    threads=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_products_and_sampled_gradient_match_dense_masked_arithmetic(
    out_features, in_features, batch, density, threads, seed
):
    generator = torch.Generator().manual_seed(seed)
    mask = random_mask(out_features, in_features, density, generator)
    weight = torch.randn(out_features, in_features, generator=generator)
    masked = weight * mask
    x = torch.randn(in_features, batch, generator=generator)
    dy = torch.randn(out_features, batch, generator=generator)
    bias = torch.randn(out_features, generator=generator)
    layout = SparseLinearLayout(weight, mask)
    assert layout.compiled
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        forward = layout.multiply(weight, x, bias, out=torch.empty(out_features, batch))
        backward = layout.multiply_transposed(weight, dy)
        grad = torch.full(
            (out_features * in_features,), 7.0
        )  # positions outside the mask must stay untouched
        compiled.sddmm(layout.offsets, layout.columns, dy, x, grad, in_features, 1)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(forward, masked @ x + bias[:, None], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(backward, masked.t() @ dy, atol=1e-5, rtol=1e-4)
    expected = torch.where(mask, dy @ x.t(), torch.tensor(7.0))
    torch.testing.assert_close(grad.view(out_features, in_features), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "missing_momentum", [False, True], ids=["sparse gradient", "dense gradient (window)"]
)
@pytest.mark.parametrize(
    "momentum, dampening, nesterov, weight_decay",
    [(0.9, 0.0, True, 5e-4), (0.9, 0.1, False, 0.0), (0.0, 0.0, False, 1e-2)],
)
def test_sgd_on_the_pattern_is_torchs_masked_sgd(
    momentum, dampening, nesterov, weight_decay, missing_momentum
):
    """Sparse gradients: torch's step at the non-zeros, nothing else touched. Dense ones (the
    momentum window): also every missing position's momentum, as torch's dense step gives it;
    weights stay masked."""
    generator = torch.Generator().manual_seed(3)
    mask = random_mask(30, 50, 0.2, generator)
    mask[4] = False  # an empty row
    weight = torch.randn(30, 50, generator=generator) * mask
    layout = SparseLinearLayout(weight, mask)
    reference = torch.nn.Parameter(weight.clone())
    optimizer = torch.optim.SGD(
        [reference],
        lr=0.1,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        weight_decay=weight_decay,
    )
    ours = weight.clone()
    buffer = torch.zeros_like(weight) if momentum else None
    for step in range(3):
        gradient = torch.randn(30, 50, generator=generator)
        if not missing_momentum:
            gradient = gradient * mask
        reference.grad = gradient.clone()
        optimizer.step()
        with torch.no_grad():
            reference.mul_(mask)
        compiled.sgd(
            layout.offsets,
            layout.columns,
            ours,
            gradient,
            buffer,
            0.1,
            weight_decay,
            momentum,
            dampening,
            nesterov,
            first_step=step == 0,
            missing_momentum=missing_momentum,
        )
    assert torch.equal(ours, reference.detach())  # the same operations, the same roundings
    if momentum:
        expected = optimizer.state[reference]["momentum_buffer"]
        if (
            not missing_momentum
        ):  # outside the window torch's missing momenta took gradient 0: ours stay 0 here
            expected = expected * mask
        assert torch.equal(buffer, expected)


@pytest.mark.parametrize("numel", [7, 1000, 70001])  # 70,001: the threaded path
@pytest.mark.parametrize(
    "momentum, dampening, nesterov, weight_decay",
    [(0.9, 0.0, True, 5e-4), (0.9, 0.1, False, 0.0), (0.0, 0.0, False, 1e-2)],
)
def test_dense_sgd_is_torchs_sgd_to_the_bit(numel, momentum, dampening, nesterov, weight_decay):
    generator = torch.Generator().manual_seed(4)
    reference = torch.nn.Parameter(torch.randn(numel, generator=generator))
    ours, buffer = reference.detach().clone(), torch.empty(numel) if momentum else None
    settings = dict(momentum=momentum, dampening=dampening, weight_decay=weight_decay)
    optimizer = torch.optim.SGD([reference], lr=0.05, nesterov=nesterov, **settings)
    for step in range(4):
        reference.grad = torch.randn(numel, generator=generator)
        optimizer.step()
        compiled.sgd_dense(ours, reference.grad, buffer, 0.05, nesterov=nesterov,
                           first_step=step == 0, **settings)  # fmt: skip
    assert torch.equal(ours, reference.detach())
    if momentum:
        assert torch.equal(buffer, optimizer.state[reference]["momentum_buffer"])


def test_without_a_compiler_the_fallback_is_used_and_said_once(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SPARSEMOMENTUM_CACHE", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    assert compiled.library.__wrapped__() is None
    message = capsys.readouterr().err.strip()
    assert message == (
        "sparsemomentum: no C compiler found (install gcc, or set $CC, to get the compiled "
        "kernels); the sparse backend uses torch's sparse operations instead (same results, "
        "slower)."
    )


def test_a_failing_build_falls_back_with_the_compilers_complaint(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SPARSEMOMENTUM_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert compiled.library.__wrapped__() is None
    assert "building the compiled kernels with" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no half-written library left in the cache


def test_kernels_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("SPARSEMOMENTUM_KERNELS", "torch")
    assert compiled.library.__wrapped__() is None


def test_the_build_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSEMOMENTUM_CACHE", str(tmp_path))
    first = compiled.library.__wrapped__()
    built = list(tmp_path.glob("sparse_kernels-*.so"))
    assert first is not None and len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    assert compiled.library.__wrapped__() is not None and built[0].stat().st_mtime_ns == stamp


def test_spmm_refuses_a_call_that_names_no_values_to_read():
    """The kernel reads W either gathered into values_out or from values[value_index]: with
    neither it would read through a null pointer."""
    mask = torch.ones(3, 4, dtype=torch.bool)
    weight = torch.randn(3, 4)
    layout = SparseLinearLayout(weight, mask)
    with pytest.raises(ValueError, match="values_out"):
        compiled.spmm(
            layout.offsets, layout.columns, weight, 4, 1, torch.randn(4, 2), None,
            torch.empty(3, 2),
        )  # fmt: skip
