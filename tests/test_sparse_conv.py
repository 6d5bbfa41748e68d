"""The direct sparse convolution computes what F.conv2d computes with the masked weight: output, dX,
db and dW."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsemomentum.backends import compiled
from sparsemomentum.backends.sparse_conv import SparseConvLayout, masked_conv2d
from sparsemomentum.errors import UserError

pytestmark = pytest.mark.usefixtures("kernel_set")  # every test with both kernel sets

TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(autouse=True)
def restore_threads():
    """Tests set 1-3 threads; a training sweep shares this machine, so put the count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def reference(inputs, weight, mask, bias, grad_output, stride, padding, dilation):
    """F.conv2d with the masked weight: output and the full dense gradients (dW not masked)."""
    inputs = inputs.detach().clone().requires_grad_()
    masked = (weight.detach() * mask).requires_grad_()
    bias = None if bias is None else bias.detach().clone().requires_grad_()
    with (
        warnings.catch_warnings()
    ):  # torch's note that padding="same" with an even kernel copies the input
        warnings.simplefilter("ignore", UserWarning)
        output = F.conv2d(inputs, masked, bias, stride, padding, dilation)
    output.backward(grad_output)
    return output.detach(), inputs.grad, masked.grad, None if bias is None else bias.grad


def density_strategy():
    return st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0))


@settings(max_examples=150, deadline=None)
@given(
    # up to 20: full and partial blocks of the 16 samples small planes interleave
    batch=st.integers(1, 20),
    in_channels=st.integers(1, 6),
    out_channels=st.integers(1, 6),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    # up to 24 wide: planes of fewer and of more than 64 positions (interleaved or not)
    extra=st.tuples(st.integers(0, 20), st.integers(0, 20)),
    density=density_strategy(),
    with_bias=st.booleans(),
    dense_weight_gradient=st.booleans(),
    threads=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_conv2d_with_the_masked_weight(
    batch,
    in_channels,
    out_channels,
    kernel,
    stride,
    padding,
    dilation,
    extra,
    density,
    with_bias,
    dense_weight_gradient,
    threads,
    seed,
):
    generator = torch.Generator().manual_seed(seed)
    # the smallest input with an output, plus extra rows and columns
    height, width = (
        max(1, d * (k - 1) + 1 - 2 * p) + e for d, k, p, e in zip(dilation, kernel, padding, extra)
    )
    weight = torch.randn(out_channels, in_channels, *kernel, generator=generator).requires_grad_()
    mask = torch.rand(weight.shape, generator=generator) < density
    bias = torch.randn(out_channels, generator=generator).requires_grad_() if with_bias else None
    inputs = torch.randn(batch, in_channels, height, width, generator=generator).requires_grad_()
    layout = SparseConvLayout(weight, mask, stride, padding, dilation)
    torch.set_num_threads(threads)
    output = masked_conv2d(inputs, weight, bias, layout, dense_weight_gradient)
    grad_output = torch.randn(output.shape, generator=generator)
    output.backward(grad_output)

    expected, grad_input, grad_weight, grad_bias = reference(
        inputs, weight, mask, bias, grad_output, stride, padding, dilation
    )
    torch.testing.assert_close(output, expected, **TOLERANCE)
    torch.testing.assert_close(inputs.grad, grad_input, **TOLERANCE)
    if dense_weight_gradient:
        torch.testing.assert_close(weight.grad, grad_weight, **TOLERANCE)
    else:  # the dense gradient at the non-zeros, exact zeros elsewhere
        torch.testing.assert_close(weight.grad[mask], grad_weight[mask], **TOLERANCE)
        assert not weight.grad[~mask].any()
    if with_bias:
        torch.testing.assert_close(bias.grad, grad_bias, **TOLERANCE)


@settings(max_examples=15, deadline=None)
@given(
    kernel=st.integers(1, 5),
    dilation=st.integers(1, 2),
    size=st.integers(5, 9),
    density=density_strategy(),
    seed=st.integers(0, 2**31 - 1),
)
def test_string_paddings_match_conv2d(kernel, dilation, size, density, seed):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(3, 2, kernel, kernel, generator=generator).requires_grad_()
    mask = torch.rand(weight.shape, generator=generator) < density
    inputs = torch.randn(2, 2, size, size + 1, generator=generator).requires_grad_()
    for padding in ("same", "valid"):
        if padding == "valid" and dilation * (kernel - 1) >= size:
            continue
        layout = SparseConvLayout(weight, mask, 1, padding, dilation)
        output = masked_conv2d(inputs, weight, None, layout)
        grad_output = torch.randn(output.shape, generator=generator)
        grad_input, grad_weight = torch.autograd.grad(output, (inputs, weight), grad_output)
        expected, expected_input, expected_weight, _ = reference(
            inputs, weight, mask, None, grad_output, 1, padding, dilation
        )
        torch.testing.assert_close(output, expected, **TOLERANCE)
        torch.testing.assert_close(grad_input, expected_input, **TOLERANCE)
        torch.testing.assert_close(grad_weight, expected_weight * mask, **TOLERANCE)


@pytest.mark.parametrize(
    "size, stride, padding, threads",
    [((40, 37), 1, 1, 2), ((33, 50), 2, 2, 3), ((12, 12), 1, 0, 1)],
)
def test_larger_maps_match_conv2d(size, stride, padding, threads):
    """Planes longer than one register-held chunk (several passes, a shorter last one)."""
    generator = torch.Generator().manual_seed(sum(size))
    weight = torch.randn(9, 7, 3, 5, generator=generator).requires_grad_()
    mask = torch.rand(weight.shape, generator=generator) < 0.2
    inputs = torch.randn(4, 7, *size, generator=generator).requires_grad_()
    bias = torch.randn(9, generator=generator).requires_grad_()
    torch.set_num_threads(threads)
    output = masked_conv2d(inputs, weight, bias, SparseConvLayout(weight, mask, stride, padding))
    grad_output = torch.randn(output.shape, generator=generator)
    output.backward(grad_output)
    expected, grad_input, grad_weight, grad_bias = reference(
        inputs, weight, mask, bias, grad_output, stride, padding, 1
    )
    torch.testing.assert_close(output, expected, **TOLERANCE)
    torch.testing.assert_close(inputs.grad, grad_input, **TOLERANCE)
    torch.testing.assert_close(weight.grad, grad_weight * mask, **TOLERANCE)
    torch.testing.assert_close(bias.grad, grad_bias, **TOLERANCE)


def test_the_weight_gradient_kernel_writes_only_the_non_zeros(kernel_set):
    if kernel_set != "compiled":
        pytest.skip("a kernel of the compiled set")
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(5, 4, 3, 3, generator=generator)
    mask = torch.rand(weight.shape, generator=generator) < 0.3
    inputs = torch.randn(3, 4, 8, 7, generator=generator)
    layout = SparseConvLayout(weight, mask, (2, 1), 1, (1, 2))
    grad_output = torch.randn(3, 5, *layout.output_size(8, 7), generator=generator)
    grad = torch.full(weight.shape, 7.0)
    compiled.conv2d_backward(
        layout.geometry(inputs.shape),
        layout.offsets,
        layout.columns,
        layout.transposed_offsets,
        layout.transposed_entries,
        weight,
        inputs,
        grad_output,
        None,
        grad,
    )
    dense = torch.nn.grad.conv2d_weight(inputs, weight.shape, grad_output, (2, 1), 1, (1, 2))
    torch.testing.assert_close(grad, torch.where(mask, dense, torch.tensor(7.0)), **TOLERANCE)


def test_inputs_of_any_layout_and_unbatched_inputs():
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(4, 3, 3, 3, generator=generator)
    mask = torch.rand(weight.shape, generator=generator) < 0.5
    layout = SparseConvLayout(weight, mask, 1, 1)
    inputs = torch.randn(2, 3, 6, 9, generator=generator)
    expected = F.conv2d(inputs, weight * mask, None, 1, 1)
    for variant in (
        inputs.to(memory_format=torch.channels_last),
        inputs.transpose(2, 3).contiguous().transpose(2, 3),
    ):
        torch.testing.assert_close(
            masked_conv2d(variant, weight, None, layout), expected, **TOLERANCE
        )
    torch.testing.assert_close(
        masked_conv2d(inputs[0], weight, None, layout), expected[0], **TOLERANCE
    )


def test_other_dtypes_take_the_fallback_with_the_same_results():
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(4, 3, 3, 3, generator=generator, dtype=torch.float64).requires_grad_()
    mask = torch.rand(weight.shape, generator=generator) < 0.4
    inputs = torch.randn(2, 3, 7, 7, generator=generator, dtype=torch.float64)
    layout = SparseConvLayout(weight, mask, 2, 1)
    output = masked_conv2d(inputs, weight, None, layout)
    output.sum().backward()
    torch.testing.assert_close(output, F.conv2d(inputs, weight * mask, None, 2, 1))
    assert not weight.grad[~mask].any()


def test_a_layout_keeps_the_mask_it_was_built_for():
    """Masks are updated in place; a layout (pattern and fallback alike) is one mask until
    rebuilt."""
    weight = torch.randn(3, 2, 3, 3)
    mask = torch.rand(weight.shape) < 0.5
    inputs = torch.randn(2, 2, 6, 6)
    layout = SparseConvLayout(weight, mask, 1, 1)
    expected = F.conv2d(inputs, weight * mask, None, 1, 1)
    mask.logical_not_()
    torch.testing.assert_close(masked_conv2d(inputs, weight, None, layout), expected, **TOLERANCE)


def test_a_weight_changed_between_forward_and_backward_is_caught(kernel_set):
    if kernel_set != "compiled":
        pytest.skip(
            "the fallback's backward never reads the weight (it differentiates a masked copy)"
        )
    weight = torch.randn(2, 2, 3, 3, requires_grad=True)
    layout = SparseConvLayout(weight, torch.ones(weight.shape, dtype=torch.bool), 1, 1)
    output = masked_conv2d(torch.randn(1, 2, 5, 5), weight, None, layout)
    with torch.no_grad():
        weight.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        output.sum().backward()


def test_unsupported_cases_say_what_to_do():
    weight = torch.randn(4, 2, 3, 3)
    mask = torch.ones(weight.shape, dtype=torch.bool)
    with pytest.raises(UserError, match="groups > 1"):
        masked_conv2d(torch.randn(1, 4, 5, 5), weight, None, SparseConvLayout(weight, mask))
    with pytest.raises(UserError, match="smaller than"):
        masked_conv2d(torch.randn(1, 2, 2, 2), weight, None, SparseConvLayout(weight, mask))
    with pytest.raises(UserError, match="mask of its shape"):
        SparseConvLayout(weight, mask[:2])
    with pytest.raises(UserError, match="stride 1"):
        SparseConvLayout(weight, mask, stride=2, padding="same")
    with pytest.raises(UserError, match="unknown padding"):
        SparseConvLayout(weight, mask, padding="full")
    with pytest.raises(UserError, match="rebuild the layout"):
        masked_conv2d(
            torch.randn(1, 2, 5, 5), torch.randn(5, 2, 3, 3), None, SparseConvLayout(weight, mask)
        )
    with pytest.raises(UserError, match="rebuild the layout"):
        masked_conv2d(
            torch.randn(1, 2, 5, 5), weight, torch.randn(3), SparseConvLayout(weight, mask)
        )


@pytest.mark.skipif(compiled.library() is None, reason="a kernel of the compiled set")
def test_the_weight_gradient_is_the_same_to_the_bit_on_every_call():
    """Several threads sum the batch's blocks into the weight gradient: each must sum the same
    blocks every call, or a seeded run is not reproducible (a dynamic schedule made this test's
    training comparison flaky)."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(32, 16, 3, 3, generator=generator).requires_grad_()
    layout = SparseConvLayout(weight, torch.rand(weight.shape, generator=generator) < 0.2, 1, 1, 1)
    inputs = torch.randn(96, 16, 8, 8, generator=generator)  # six blocks of 16 samples
    grad_output = torch.randn(96, 32, 8, 8, generator=generator)
    torch.set_num_threads(2)
    gradients = []
    for _ in range(20):
        weight.grad = None
        masked_conv2d(inputs, weight, None, layout).backward(grad_output)
        gradients.append(weight.grad.clone())
    assert all(torch.equal(gradient, gradients[0]) for gradient in gradients)
