"""The sparse backend inside the sparsifier: same decisions as the masked mode."""

import pytest
import torch
from conftest import mlp, train_steps
from torch import nn

import sparsemomentum as sm
from sparsemomentum.models.wide_resnet import wide_resnet

pytestmark = pytest.mark.usefixtures("kernel_set")  # every test with both kernel sets


def cnn():
    """Two convolutions (one strided) and a Linear layer: every kind the sparse backend switches."""
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 4, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(36, 5),
    )


def every_layer_sparse():
    """The sparse backend with no size or density limit, so that every layer runs its kernel."""
    return sm.SparseBackend(max_density=1.0, min_weights=0)


MODELS = {"mlp": (lambda: mlp(30, 40, 20, 5), 30), "cnn": (cnn, (2, 8, 8))}


def run(backend, steps=60, window=50, total_steps=60, model_name="mlp", **options):
    torch.manual_seed(0)
    build, input_shape = MODELS[model_name]
    model = build()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sparsifier = sm.SparseMomentum(
        model,
        optimizer,
        density=0.2,
        total_steps=total_steps,
        update_interval=20,
        backend=every_layer_sparse() if backend == "sparse" else backend,
        momentum_window=window,
        seed=3,
        **options,
    )
    train_steps(sparsifier, model, steps, input_shape, 5)
    return sparsifier


@pytest.mark.parametrize("model_name", MODELS)
def test_window_covering_every_step_reproduces_the_masked_mode(model_name):
    masked, sparse = (
        run("masked", model_name=model_name),
        run("sparse", window=1000, model_name=model_name),
    )
    assert set(sparse.backend.kernels.sparse) == set(
        sparse.masks
    )  # every layer ran on a sparse kernel
    assert sparse.update_count == masked.update_count == 2
    assert all(torch.equal(masked.masks[n], sparse.masks[n]) for n in masked.masks)
    assert all(
        torch.allclose(masked.weights[n], sparse.weights[n], atol=1e-5) for n in masked.weights
    )


def test_momentum_window_turns_dense_gradients_on_only_before_updates():
    sparsifier = run("sparse", steps=0, window=5, total_steps=100)
    flags = []
    for _ in range(40):
        flags.append(sparsifier.dense_gradient_needed())
        train_steps(sparsifier, sparsifier.model, 1, 30, 5)
    # Steps 16-20 and 36-40 (1-based) precede the updates at steps 20 and 40.
    assert [i + 1 for i, flag in enumerate(flags) if flag] == [
        16,
        17,
        18,
        19,
        20,
        36,
        37,
        38,
        39,
        40,
    ]


@pytest.mark.filterwarnings("ignore:the sparse backend computes dense weight gradients")
def test_epoch_updates_learn_their_period_and_keep_dense_gradients_until_then():
    flags = epoch_wise_flags(period={})
    assert flags[:10] == [True] * 10  # first epoch: period unknown, so stay exact
    assert flags[10:20] == [False] * 7 + [True] * 3


def test_epoch_updates_with_a_given_period_open_the_window_only_before_each_update():
    flags = epoch_wise_flags(period={"steps_per_epoch": 10})
    assert flags[:20] == ([False] * 7 + [True] * 3) * 2


def epoch_wise_flags(period):
    """Whether each of 30 steps (3 epochs of 10, window 3) computed dense weight gradients."""
    torch.manual_seed(0)
    model = mlp(10, 10)
    sparsifier = sm.SparseMomentum(
        model,
        torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        density=0.3,
        total_steps=100,
        backend=every_layer_sparse(),
        momentum_window=3,
        **period,
    )
    flags = []
    for epoch in range(3):
        for _ in range(10):
            flags.append(sparsifier.dense_gradient_needed())
            train_steps(sparsifier, model, 1, 10, 10)
        sparsifier.update_masks()
    return flags


def test_random_growth_never_needs_dense_gradients_and_masks_stay_exact():
    sparsifier = run("sparse", growth="random")
    assert not sparsifier.dense_gradient_needed()
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()
    for name, weight in sparsifier.weights.items():
        assert torch.all(weight[~sparsifier.masks[name]] == 0)


@pytest.mark.parametrize("method", ["set", "rigl", "snip", "static", "dsr", "gmp"])
def test_every_sparse_method_runs_on_the_sparse_backend(method):
    torch.manual_seed(0)
    model = mlp(20, 30, 10)
    sparsifier = sm.create_sparsifier(
        method,
        model,
        torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        density=0.2,
        total_steps=200,
        backend=every_layer_sparse(),
    )
    train_steps(sparsifier, model, 200, 20, 10)
    sparsifier.update_masks()
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()
    assert set(sparsifier.backend.kernels.sparse) == set(sparsifier.masks)


def test_dense_baseline_refuses_the_sparse_backend():
    model = mlp(4, 4)
    with pytest.raises(sm.UserError, match="the dense baseline has no sparse layers"):
        sm.Dense(model, torch.optim.SGD(model.parameters(), lr=0.1), backend="sparse")


def static_pair(values_step: bool, model_name: str = "mlp", steps: int = 30):
    torch.manual_seed(0)
    build, input_shape = MODELS[model_name]
    model = build()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sparsifier = sm.Static(
        model,
        optimizer,
        density=0.2,
        total_steps=steps,
        backend=every_layer_sparse(),
        seed=3,
    )
    if not values_step:
        sparsifier.backend.values_sgd = (
            None  # torch's own dense SGD step on the same sparse gradients
        )
    train_steps(sparsifier, model, steps, input_shape, 5)
    return sparsifier


@pytest.mark.parametrize("model_name", MODELS)
def test_values_only_sgd_step_equals_torchs_dense_step(model_name):
    fast, reference = static_pair(True, model_name), static_pair(False, model_name)
    assert set(fast.backend.kernels.sparse) == set(fast.masks)
    assert fast.backend.values_sgd is not None and not fast.backend.dense_gradient
    fast.backend.values_sgd.flush()
    # every parameter: the sparse layers' weights and what the compiled dense step takes (biases)
    parameters = zip(fast.model.named_parameters(), reference.model.named_parameters())
    for (name, param), (_, reference_param) in parameters:
        assert torch.equal(param, reference_param), name  # the same roundings as torch's step
        fast_buffer = fast.optimizer.state[param]["momentum_buffer"]
        reference_buffer = reference.optimizer.state[reference_param]["momentum_buffer"]
        assert torch.allclose(fast_buffer, reference_buffer, atol=1e-6), name


def test_missing_momentum_decay_is_applied_before_a_mask_update_reads_it():
    sparsifier = run("sparse", steps=0, window=5, total_steps=100)
    for _ in range(19):
        train_steps(sparsifier, sparsifier.model, 1, 30, 5)
    pending = sparsifier.backend.values_sgd.pending_decay
    assert all(
        count == 0 for count in pending.values()
    )  # flushed when the window opened at step 15
    assert sparsifier.state_dict()["backend"]["pending_momentum_decay"] == pending


def test_small_or_dense_layers_stay_on_the_dense_path_and_move_when_their_density_changes():
    torch.manual_seed(0)
    model = mlp(200, 100, 10)  # 20,000 and 1,000 weights
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparsifier = sm.SparseMomentum(
        model, optimizer, density=0.1, total_steps=100, backend="sparse", update_interval=10
    )
    assert list(sparsifier.backend.kernels.sparse) == ["0.weight"]
    assert "1,000 weights" in sparsifier.backend.kernels.dense["2.weight"]
    sparsifier.masks["0.weight"] = torch.ones_like(
        sparsifier.masks["0.weight"]
    )  # as if it had grown dense
    sparsifier.masks_changed()
    assert (
        "density 100.00% is above 20%" in sparsifier.backend.kernels.dense["0.weight"]
        and not sparsifier.backend.kernels.sparse
    )
    train_steps(sparsifier, model, 3, 200, 10)
    for name, weight in sparsifier.weights.items():
        assert torch.all(weight[~sparsifier.masks[name]] == 0)


def test_masks_changed_by_hand_settle_the_momentum_decay_owed_under_the_old_masks():
    """Missing weights' momenta owe one decay per step, applied lazily; masks assigned between
    steps and announced with masks_changed() must settle that debt with the old layout first
    (a layer moved to dense kernels with debt outstanding once crashed the next window step)."""
    torch.manual_seed(0)
    model = mlp(200, 100, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparsifier = sm.Static(model, optimizer, density=0.1, backend="sparse")
    sparsifier.backend.set_dense_gradient(True)  # a window step: every momentum non-zero
    train_steps(sparsifier, model, 1, 200, 10)
    weight, old = sparsifier.weights["0.weight"], sparsifier.masks["0.weight"].clone()
    owed = optimizer.state[weight]["momentum_buffer"][~old].clone() * 0.9**3
    train_steps(sparsifier, model, 3, 200, 10, seed=1)  # plain steps: three decays owed
    assert sparsifier.backend.values_sgd.pending_decay["0.weight"] == 3
    sparsifier.masks["0.weight"] = torch.ones_like(old)  # the layer goes to dense kernels
    sparsifier.masks_changed()
    assert torch.allclose(optimizer.state[weight]["momentum_buffer"][~old], owed)
    sparsifier.backend.set_dense_gradient(True)
    train_steps(sparsifier, model, 2, 200, 10, seed=2)
    assert sparsifier.nonzero_count() == old.numel() + sparsifier.masks["2.weight"].sum()


def test_mixed_precision_runs_sparse_layers_in_float32_and_a_bfloat16_model_stays_dense():
    torch.manual_seed(0)
    model = cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparsifier = sm.SparseMomentum(
        model, optimizer, density=0.3, total_steps=20, update_interval=5,
        backend=sm.SparseBackend(max_density=0.5, min_weights=0),
    )  # fmt: skip
    model[0].forward = type(model[0]).forward.__get__(model[0])  # the first layer dense, as
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a layer over the density limit would be
        train_steps(sparsifier, model, 10, (2, 8, 8), 5)
    assert sparsifier.update_count == 2
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()
    model = mlp(30, 40, 5).to(torch.bfloat16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparsifier = sm.SparseMomentum(
        model, optimizer, density=0.2, total_steps=20, backend=every_layer_sparse()
    )
    assert not sparsifier.backend.kernels.sparse
    assert "bfloat16 weights" in sparsifier.backend.kernels.dense["0.weight"]
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 30, dtype=torch.bfloat16)).float().pow(2).mean().backward()
        sparsifier.step()
    assert all(torch.all(w[~sparsifier.masks[n]] == 0) for n, w in sparsifier.weights.items())


@pytest.mark.parametrize("clip", ["sparsifier", "torch"])
def test_sparsifier_gradient_clipping_clips_both_backends_alike(clip):
    """Before the first update (the window covers steps 16-19 only), the two backends step the
    active weights alike; torch's clip_grad_norm_ would count the masked backend's gradients of
    missing weights in the norm and scale the step differently."""

    def trained(backend):
        torch.manual_seed(0)
        model = mlp(30, 40, 20, 5)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        sparsifier = sm.SparseMomentum(
            model, optimizer, density=0.2, total_steps=60, update_interval=20, momentum_window=4,
            backend=every_layer_sparse() if backend == "sparse" else backend, seed=3,
        )  # fmt: skip
        generator = torch.Generator().manual_seed(1)
        for _ in range(19):
            optimizer.zero_grad()
            inputs = torch.randn(16, 30, generator=generator)
            nn.functional.mse_loss(
                model(inputs), torch.randn(16, 5, generator=generator)
            ).backward()
            if clip == "sparsifier":
                assert float(sparsifier.clip_grad_norm_(0.05)) > 0.05  # every step is clipped
            else:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
            sparsifier.step()
        return sparsifier

    masked, sparse = trained("masked"), trained("sparse")
    agree = all(
        torch.allclose(masked.weights[n], sparse.weights[n], atol=1e-6) for n in masked.weights
    )
    assert agree == (clip == "sparsifier")


@pytest.mark.parametrize(
    "options, warns",
    [({}, True), ({"steps_per_epoch": 10}, False), ({"update_interval": 10}, False),
     ({"growth": "random"}, False)],
)  # fmt: skip
def test_the_sparse_backend_warns_when_it_cannot_place_its_window(options, warns):
    import warnings

    model = mlp(30, 40, 5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sm.SparseMomentum(
            model, optimizer, density=0.2, total_steps=100, backend="sparse", **options
        )
    messages = [str(w.message) for w in caught]
    assert any("pass steps_per_epoch=len(loader)" in m for m in messages) == warns


def test_a_cifar_shaped_network_gets_the_masked_modes_masks():
    """WRN-10-1 on 32x32 inputs (BatchNorm, strided and 1x1 convolutions, dropout): the
    sparse backend's mask update is the masked mode's. (BatchNorm on batches of 16 random
    images amplifies float-rounding differences tenfold every two steps after it, so the run
    stops at the update.)"""

    def trained(backend):
        torch.manual_seed(0)
        model = wide_resnet(10, 1, num_classes=5, dropout=0.3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        sparsifier = sm.SparseMomentum(
            model, optimizer, density=0.2, total_steps=100, update_interval=10, seed=3,
            backend=every_layer_sparse() if backend == "sparse" else backend,
        )  # fmt: skip
        before = {name: mask.clone() for name, mask in sparsifier.masks.items()}
        train_steps(sparsifier, model, 10, (3, 32, 32), 5)
        return sparsifier, before

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # as benchmarked; on one thread 3 near-tied pairs of 15,408 swap
    try:
        (masked, before), (sparse, _) = trained("masked"), trained("sparse")
    finally:
        torch.set_num_threads(threads)
    assert set(sparse.backend.kernels.sparse) == set(sparse.masks)
    assert masked.update_count == sparse.update_count == 1
    assert any(not torch.equal(before[n], masked.masks[n]) for n in before)  # the masks moved
    assert all(torch.equal(masked.masks[n], sparse.masks[n]) for n in masked.masks)
    for name in masked.weights:
        assert torch.allclose(masked.weights[name], sparse.weights[name], atol=1e-6)
