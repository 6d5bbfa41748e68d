"""The paper's speed-up estimator: hand-made masks whose estimates are known exactly.

Estimated times are the measured dense time times a factor, so the tests check the factor
(estimated / dense), which does not depend on how fast this machine is.
"""

import pytest
import torch
from conftest import mlp
from torch import nn

import sparsemomentum as sm
from sparsemomentum.analysis.speedup import estimate_speedup
from sparsemomentum.errors import UserError


def estimate(model, masks, inputs):
    return estimate_speedup(model, masks, inputs, repeats=2)


def test_channel_skipping_counts_empty_input_channels_and_feature_maps():
    conv = nn.Conv2d(4, 8, 3, padding=1)
    mask = torch.ones(8, 4, 3, 3, dtype=torch.bool)
    mask[:, :2] = False  # half the input channels
    mask[:2] = False  # a quarter of the output feature maps
    (layer,) = estimate(conv, {"weight": mask}, torch.randn(2, 4, 5, 5)).layers
    assert (layer.input_channels, layer.output_channels) == (0.5, 0.75)
    assert layer.channel_skip_ms == pytest.approx(layer.dense_ms * 0.5 * 0.75)
    assert layer.channel_skip_speedup == pytest.approx(1 / 0.375)


def test_a_single_active_weight_keeps_its_channel_and_feature_map():
    conv = nn.Conv2d(4, 8, 3)
    mask = torch.zeros(8, 4, 3, 3, dtype=torch.bool)
    mask[5, 2, 1, 1] = True
    (layer,) = estimate(conv, {"weight": mask}, torch.randn(1, 4, 5, 5)).layers
    assert (layer.input_channels, layer.output_channels) == (0.25, 0.125)


def test_grouped_convolution_judges_input_channels_within_their_group():
    conv = nn.Conv2d(
        4, 4, 1, groups=2
    )  # weight [4, 2, 1, 1]: outputs 0-1 read inputs 0-1, outputs 2-3 inputs 2-3
    mask = torch.zeros(4, 2, 1, 1, dtype=torch.bool)
    mask[0, 0] = True  # input 0 of group 0 only
    (layer,) = estimate(conv, {"weight": mask}, torch.randn(1, 4, 3, 3)).layers
    assert (layer.input_channels, layer.output_channels) == (0.25, 0.25)


def test_sparse_convolution_scales_by_weight_and_input_density_and_flops_by_weight_density():
    linear = nn.Linear(10, 20)
    mask = torch.zeros(200, dtype=torch.bool)
    mask[::10] = True  # weight density 0.1
    inputs = torch.randn(4, 10)
    inputs[:, ::2] = 0  # half the inputs are zero
    (layer,) = estimate(linear, {"weight": mask.view(20, 10)}, inputs).layers
    assert (layer.weight_density, layer.input_density) == (0.1, 0.5)
    assert layer.sparse_conv_ms == pytest.approx(layer.dense_ms * 0.05)
    assert layer.flop_speedup == pytest.approx(10.0)
    assert layer.dense_flops == 2 * 4 * 20 * 10


def test_conv_flops_count_every_output_position():
    conv = nn.Conv2d(4, 8, 3, padding=1)
    (layer,) = estimate(conv, {}, torch.randn(2, 4, 5, 5)).layers
    assert layer.dense_flops == 2 * (2 * 8 * 5 * 5) * (4 * 3 * 3)


def test_activation_density_is_measured_at_each_hidden_layer():
    model = mlp(4, 4, 3)
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(4))
        model[0].bias.zero_()
    layers = estimate(model, {}, torch.tensor([[1.0, -1.0, 2.0, -2.0]])).layers
    assert [layer.name for layer in layers] == ["0", "2"]
    assert [layer.input_density for layer in layers] == [1.0, 0.5]  # ReLU zeroed the negative half


def test_layers_without_a_mask_count_as_dense():
    (layer,) = estimate(nn.Linear(6, 3), {}, torch.randn(2, 6)).layers
    assert (layer.weight_density, layer.input_channels, layer.output_channels) == (1.0, 1.0, 1.0)
    assert layer.flop_speedup == layer.channel_skip_speedup == 1.0


def test_totals_sum_times_over_conv_layers_and_over_all_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 3 * 3, 5))
    masks = {"0.weight": torch.rand(4, 2, 3, 3) < 0.5, "2.weight": torch.rand(5, 36) < 0.2}
    result = estimate(model, masks, torch.randn(3, 2, 5, 5))
    conv, linear = result.layers
    conv_total, all_total = result.totals
    assert (conv_total.layers, all_total.layers) == (1, 2)
    assert conv_total.sparse_conv_speedup == pytest.approx(conv.sparse_conv_speedup)
    assert all_total.dense_ms == pytest.approx(conv.dense_ms + linear.dense_ms)
    assert all_total.channel_skip_speedup == pytest.approx(
        (conv.dense_ms + linear.dense_ms) / (conv.channel_skip_ms + linear.channel_skip_ms)
    )
    assert all_total.flop_speedup == pytest.approx(
        (conv.dense_flops + linear.dense_flops) / (conv.sparse_flops + linear.sparse_flops)
    )


def test_a_model_without_convolutions_has_only_the_all_layers_total():
    result = estimate(mlp(6, 4, 2), {}, torch.randn(2, 6))
    assert [total.scope for total in result.totals] == ["all layers"]


def test_sparse_backend_model_is_estimated_with_its_sparsifier_masks():
    torch.manual_seed(0)
    model = mlp(30, 20, 5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparsifier = sm.SparseMomentum(model, optimizer, density=0.2, total_steps=10, backend="sparse")
    result = estimate(model, sparsifier.masks, torch.randn(8, 30))
    densities = sparsifier.layer_densities()
    assert [layer.weight_density for layer in result.layers] == [
        densities["0.weight"],
        densities["2.weight"],
    ]
    assert all(layer.dense_ms > 0 for layer in result.layers)


def test_format_table_has_a_row_per_layer_and_per_total():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 2 * 2, 3))
    table = estimate(model, {}, torch.randn(1, 1, 4, 4)).format_table()
    lines = table.splitlines()
    assert lines[0].startswith("| layer |") and set(lines[1]) == {"|", "-"}
    assert len(lines) == 2 + 2 + 2
    assert "total, conv layers" in table and "total, all layers" in table


@pytest.mark.parametrize(
    "masks, message",
    [
        ({"missing.weight": torch.ones(3, 6, dtype=torch.bool)}, "names no Conv or Linear weight"),
        ({"weight": torch.ones(6, 3, dtype=torch.bool)}, "has shape"),
    ],
)
def test_masks_that_do_not_fit_the_model_are_refused(masks, message):
    with pytest.raises(UserError, match=message):
        estimate(nn.Linear(6, 3), masks, torch.randn(2, 6))
