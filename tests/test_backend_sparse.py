"""The sparse Linear path computes what the masked dense path computes: outputs, dX, db and dW."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from conftest import mlp
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sparsemomentum as sm
import sparsemomentum.backends.sparse_linear as backend
from sparsemomentum.backends import SparseLinearLayout, masked_linear, sparsify_layers

pytestmark = pytest.mark.usefixtures("kernel_set")  # every test with both kernel sets

TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


@pytest.fixture(autouse=True)
def one_thread():
    """A training sweep shares this machine; one thread also keeps sums in a fixed order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_layer(out_features, in_features, density, seed):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(out_features, in_features, generator=generator) < density
    weight = nn.Parameter(
        torch.randn(out_features, in_features, generator=generator) / in_features**0.5 * mask
    )
    bias = nn.Parameter(torch.randn(out_features, generator=generator))
    return weight, bias, mask, generator


def weight_masks(model, density, generator=None):
    return {
        name: torch.rand(p.shape, generator=generator) < density
        for name, p in model.named_parameters()
        if name.endswith("weight")
    }


@torch.no_grad()
def apply_masks(model, masks):
    for name, mask in masks.items():
        model.get_parameter(name).mul_(mask)


def dense_reference(inputs, weight, bias, grad_output):
    """The masked dense path as the Sparsifier trains (zero weights, gradients not masked): output
    and all gradients."""
    inputs = inputs.detach().clone().requires_grad_()
    weight = weight.detach().clone().requires_grad_()
    bias = None if bias is None else bias.detach().clone().requires_grad_()
    output = F.linear(inputs, weight, bias)
    output.backward(grad_output)
    return output.detach(), inputs.grad, weight.grad, None if bias is None else bias.grad


@settings(max_examples=100, deadline=None)
@given(
    out_features=st.integers(1, 300),
    in_features=st.integers(1, 300),
    batch=st.integers(1, 64),
    density=st.floats(0.01, 1.0),
    with_bias=st.booleans(),
    dense_weight_gradient=st.booleans(),
    feature_major_input=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_masked_dense(
    out_features,
    in_features,
    batch,
    density,
    with_bias,
    dense_weight_gradient,
    feature_major_input,
    seed,
):
    weight, bias, mask, generator = random_layer(out_features, in_features, density, seed)
    bias = bias if with_bias else None
    inputs = torch.randn(batch, in_features, generator=generator)
    if feature_major_input:
        inputs = inputs.t().contiguous().t()
    inputs.requires_grad_()
    grad_output = torch.randn(batch, out_features, generator=generator)
    expected, grad_input, grad_weight, grad_bias = dense_reference(
        inputs, weight, bias, grad_output
    )

    output = masked_linear(
        inputs, weight, bias, SparseLinearLayout(weight, mask), dense_weight_gradient
    )
    output.backward(grad_output)

    assert torch.allclose(output, expected, **TOLERANCE)
    assert torch.allclose(inputs.grad, grad_input, **TOLERANCE)
    if with_bias:
        assert torch.allclose(bias.grad, grad_bias, **TOLERANCE)
    if dense_weight_gradient:
        assert torch.allclose(weight.grad, grad_weight, **TOLERANCE)
    else:
        assert torch.allclose(weight.grad, grad_weight * mask, **TOLERANCE)
        assert not weight.grad[~mask].any()


def test_leading_dimensions_and_empty_mask():
    weight, bias, mask, generator = random_layer(7, 5, 0.5, seed=1)
    inputs = torch.randn(2, 3, 5, generator=generator)
    output = masked_linear(inputs, weight, bias, SparseLinearLayout(weight, mask))
    assert output.shape == (2, 3, 7)
    assert torch.allclose(output, F.linear(inputs, weight * mask, bias), **TOLERANCE)
    empty = torch.zeros_like(mask)
    output = masked_linear(inputs, weight, bias, SparseLinearLayout(weight, empty))
    output.sum().backward()
    assert torch.allclose(output, bias.detach().expand(2, 3, 7))
    assert not weight.grad.any()


def test_values_follow_weight_changes_without_rebuild():
    weight, bias, mask, generator = random_layer(20, 30, 0.3, seed=2)
    layout = SparseLinearLayout(weight, mask)
    inputs = torch.randn(4, 30, generator=generator)
    with torch.no_grad():
        weight.mul_(-2.5)  # as optimizer.step() does, in place
    assert torch.allclose(
        masked_linear(inputs, weight, bias, layout),
        F.linear(inputs, weight * mask, bias),
        **TOLERANCE,
    )


def test_weight_changed_between_forward_and_backward_is_caught():
    weight, bias, mask, generator = random_layer(6, 4, 0.5, seed=3)
    output = masked_linear(
        torch.randn(3, 4, generator=generator), weight, bias, SparseLinearLayout(weight, mask)
    )
    with torch.no_grad():
        weight.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        output.sum().backward()


def test_activations_stay_feature_major_between_layers():
    """The second layer reads X^T without a copy: the first one's output is a transposed contiguous
    tensor."""
    model = mlp(12, 9, 5)
    handle = sparsify_layers(model, weight_masks(model, 1.0))
    hidden = torch.relu(model[0](torch.randn(6, 12)))
    assert hidden.t().is_contiguous()
    handle.remove()


# ---------------------------------------------------------------- the reused dW buffer
def sparse_step(inputs, weight, bias, layout, dense=False):
    masked_linear(inputs, weight, bias, layout, dense).pow(2).sum().backward()


def expected_weight_gradient(inputs, weight, bias, mask, dense=False):
    weight = weight.detach().clone().requires_grad_()
    F.linear(inputs, weight, bias.detach()).pow(2).sum().backward()
    return weight.grad if dense else weight.grad * mask


@pytest.mark.skipif(
    backend._STORAGE_USE_COUNT is None, reason="this torch cannot tell whether the buffer is free"
)
def test_gradient_buffer_is_adopted_without_copies():
    weight, bias, mask, generator = random_layer(10, 8, 0.4, seed=4)
    layout = SparseLinearLayout(weight, mask)
    inputs = torch.randn(5, 8, generator=generator)
    pointers = set()
    for _ in range(3):
        weight.grad = None  # zero_grad(set_to_none=True)
        sparse_step(inputs, weight, bias, layout)
        pointers.add(weight.grad.data_ptr())
    assert len(pointers) == 1


def test_accumulation_without_zeroing_adds_up():
    weight, bias, mask, generator = random_layer(10, 8, 0.4, seed=5)
    layout = SparseLinearLayout(weight, mask)
    first, second = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    sparse_step(first, weight, bias, layout)
    sparse_step(second, weight, bias, layout)
    expected = expected_weight_gradient(first, weight, bias, mask) + expected_weight_gradient(
        second, weight, bias, mask
    )
    assert torch.allclose(weight.grad, expected, **TOLERANCE)


def test_layer_used_twice_in_one_graph():
    weight, bias, mask, generator = random_layer(8, 8, 0.5, seed=6)
    layout = SparseLinearLayout(weight, mask)
    inputs = torch.randn(5, 8, generator=generator)
    masked_linear(
        torch.relu(masked_linear(inputs, weight, bias, layout)), weight, bias, layout
    ).sum().backward()
    reference = weight.detach().clone().requires_grad_()
    F.linear(
        torch.relu(F.linear(inputs, reference, bias.detach())), reference, bias.detach()
    ).sum().backward()
    assert torch.allclose(weight.grad, reference.grad * mask, **TOLERANCE)


def test_kept_gradient_is_not_overwritten_and_dense_values_are_cleared():
    weight, bias, mask, generator = random_layer(10, 8, 0.4, seed=7)
    layout = SparseLinearLayout(weight, mask)
    first, second = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    sparse_step(first, weight, bias, layout, dense=True)
    kept, weight.grad = weight.grad, None
    sparse_step(second, weight, bias, layout)
    assert torch.allclose(
        kept, expected_weight_gradient(first, weight, bias, mask, dense=True), **TOLERANCE
    )
    del kept
    weight.grad = None
    sparse_step(first, weight, bias, layout)  # back on the buffer the dense step filled
    assert torch.allclose(
        weight.grad, expected_weight_gradient(first, weight, bias, mask), **TOLERANCE
    )


# ---------------------------------------------------------------- the model-level handle
class Tagged(nn.Linear):
    """A subclass may redefine forward; it must stay dense."""


def test_handle_switches_plain_linear_and_conv_layers_only():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 2, 3),
        nn.Conv2d(2, 2, 1, groups=2),
        nn.Conv2d(2, 2, 1, padding_mode="reflect"),
        nn.Flatten(),
        nn.Linear(8, 6),
        nn.ReLU(),
        Tagged(6, 3),
    )
    masks = weight_masks(model, 0.5)
    keys = list(model.state_dict())
    reference = copy.deepcopy(model)
    apply_masks(reference, {name: masks[name] for name in ("0.weight", "4.weight")})
    handle = sparsify_layers(model, masks)
    assert set(handle.sparse) == {"0.weight", "4.weight"}
    assert set(handle.dense) == {"1.weight", "2.weight", "6.weight"}
    assert "groups=2" in handle.dense["1.weight"] and "reflect" in handle.dense["2.weight"]
    assert "subclass of nn.Linear" in handle.dense["6.weight"]
    assert list(model.state_dict()) == keys
    inputs = torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(
        model(inputs), reference(inputs)
    )  # the switched layers compute with their masks
    with pytest.raises(sm.UserError, match="already"):
        sparsify_layers(model, masks)
    handle.remove()
    assert "forward" not in model[0].__dict__ and "forward" not in model[4].__dict__
    with pytest.raises(sm.UserError, match="names no parameter of this model"):
        sparsify_layers(model, {"9.weight": masks["4.weight"]})


def masked_mlp_pair(seed=0):
    torch.manual_seed(seed)
    dense = mlp(20, 30, 16, 4)
    return dense, copy.deepcopy(dense)


def test_rebuild_with_a_new_mask_and_dense_weight_gradient_switch():
    dense, sparse = masked_mlp_pair()
    generator = torch.Generator().manual_seed(1)
    handle = sparsify_layers(sparse, weight_masks(sparse, 0.3, generator))
    masks = weight_masks(sparse, 0.2, generator)
    apply_masks(dense, masks)
    apply_masks(sparse, masks)
    handle.rebuild(masks)
    inputs, targets = (
        torch.randn(9, 20, generator=generator),
        torch.randn(9, 4, generator=generator),
    )
    for dense_weight_gradient in (False, True):
        handle.set_dense_weight_gradient(dense_weight_gradient)
        for model in (dense, sparse):
            model.zero_grad(set_to_none=True)
        expected = dense(inputs)
        F.mse_loss(expected, targets).backward()
        output = sparse(inputs)
        F.mse_loss(output, targets).backward()
        assert torch.allclose(output, expected, **TOLERANCE)
        for name in masks:
            reference = dense.get_parameter(name).grad
            reference = reference if dense_weight_gradient else reference * masks[name]
            assert torch.allclose(sparse.get_parameter(name).grad, reference, **TOLERANCE)
    handle.remove()


def test_copied_and_pickled_models_follow_their_own_weights():
    model, plain = masked_mlp_pair()
    masks = weight_masks(model, 0.5)
    apply_masks(model, masks)
    sparsify_layers(model, masks)
    saved = io.BytesIO()
    torch.save(model, saved)
    saved.seek(0)
    inputs = torch.randn(3, 20)
    for copied in (copy.deepcopy(model), torch.load(saved, weights_only=False)):
        with torch.no_grad():
            for parameter in copied.parameters():
                parameter.mul_(-3.0)
        plain.load_state_dict(copied.state_dict())
        assert torch.allclose(copied(inputs), plain(inputs), **TOLERANCE)


def train(method, use_sparse_kernels, dense_weight_gradient, steps=20):
    torch.manual_seed(0)
    model = mlp(32, 64, 32, 10)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    updates = {"update_interval": 5} if method is sm.SparseMomentum else {}  # static: none
    sparsifier = method(model, optimizer, density=0.2, total_steps=steps, **updates)
    handle = (
        sparsify_layers(model, sparsifier.masks, dense_weight_gradient)
        if use_sparse_kernels
        else None
    )
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        inputs, labels = (
            torch.randn(16, 32, generator=generator),
            torch.randint(0, 10, (16,), generator=generator),
        )
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        losses.append(loss.item())
        updates = sparsifier.update_count
        sparsifier.step()
        if handle is not None and sparsifier.update_count != updates:
            handle.rebuild(sparsifier.masks)
    return torch.tensor(losses), sparsifier.masks


@pytest.mark.parametrize(
    "method, dense_weight_gradient",
    [(sm.Static, False), (sm.SparseMomentum, True)],
    ids=["static-sparse-dW", "sparse-momentum-updates-dense-dW"],
)
def test_sgd_momentum_training_matches_masked_dense(method, dense_weight_gradient):
    """Static masks need dW at the non-zeros only; mask updates by momentum need the full dW."""
    dense_losses, dense_masks = train(method, False, dense_weight_gradient)
    sparse_losses, sparse_masks = train(method, True, dense_weight_gradient)
    assert torch.allclose(sparse_losses, dense_losses, **TOLERANCE)
    assert all(torch.equal(sparse_masks[name], dense_masks[name]) for name in dense_masks)


def test_layouts_use_the_compiled_kernels_where_they_can(kernel_set):
    weight, mask = torch.randn(8, 6), torch.rand(8, 6) < 0.5
    assert SparseLinearLayout(weight, mask).compiled == (kernel_set == "compiled")
    assert not SparseLinearLayout(
        weight.double(), mask
    ).compiled  # float32 only: float64 takes torch's operations


def test_default_density_limits_follow_the_layer_kind():
    """Measured break-evens: CSR products stop winning near 20 %, the direct convolution near 50
    %."""
    model = nn.Sequential(nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(16, 4))
    generator = torch.Generator().manual_seed(0)
    masks = {
        name: torch.rand(p.shape, generator=generator) < 0.35
        for name, p in model.named_parameters()
        if name.endswith("weight")
    }
    handle = sparsify_layers(model, masks, max_density=None)
    assert set(handle.sparse) == {"0.weight"}
    assert "above 20%" in handle.dense["2.weight"]
    handle.rebuild({name: torch.ones_like(mask) for name, mask in masks.items()})
    assert handle.sparse == {} and "above 50%" in handle.dense["0.weight"]


def test_hash_dropout_keeps_the_right_fraction_independently_and_its_gradient_uses_the_same_mask():
    from sparsemomentum.backends.dropout import Dropout, dropout

    torch.manual_seed(0)
    inputs = torch.randn(64, 32, 16, 16).abs().add_(0.1).requires_grad_()
    torch.manual_seed(5)
    outputs = dropout(inputs, 0.3, True)
    kept = outputs != 0
    assert abs(float(kept.float().mean()) - 0.7) < 0.005  # 524,288 draws: SE 0.0006
    assert torch.allclose(outputs[kept], inputs[kept] / 0.7)
    flat = kept.flatten().float()
    neighbours = float(((flat[1:] - 0.7) * (flat[:-1] - 0.7)).mean() / flat.var())
    assert abs(neighbours) < 0.01  # no correlation between consecutive elements
    outputs.backward(torch.ones_like(outputs))
    assert torch.equal(inputs.grad != 0, kept)
    torch.manual_seed(5)
    again = dropout(inputs.detach(), 0.3, True)
    assert torch.equal(again, outputs.detach())  # reproducible from torch's seed
    layer = Dropout(0.3).eval()
    assert layer(inputs) is inputs


def test_an_input_of_the_wrong_width_is_refused_as_torch_refuses_it():
    model = mlp(20, 10)
    sparsify_layers(model, weight_masks(model, 0.5))
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        model(torch.randn(3, 30))
