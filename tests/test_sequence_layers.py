"""Attention, recurrent and embedding layers: sparse where a user expects them to be, with
exact counts and masked weights at zero after every step, SGD and AdamW, both backends."""

import pytest
import torch
from torch import nn

import sparsemomentum as sm


class Encoder(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.layer = layer
        self.head = nn.Linear(8, 16)

    def forward(self, tokens):
        hidden = self.embed(tokens)
        if isinstance(self.layer, nn.TransformerDecoderLayer):
            hidden = self.layer(hidden, hidden)
        else:
            hidden = self.layer(hidden)
        return self.head(hidden[0] if isinstance(hidden, tuple) else hidden)


LAYERS = {
    "transformer-encoder": lambda: nn.TransformerEncoderLayer(8, 2, 16, batch_first=True),
    "transformer-decoder": lambda: nn.TransformerDecoderLayer(8, 2, 16, batch_first=True),
    "lstm": lambda: nn.LSTM(8, 4, num_layers=2, batch_first=True, bidirectional=True),
    "gru": lambda: nn.GRU(8, 8, batch_first=True),
}
EXPECTED = {
    "transformer-encoder": {"layer.self_attn.in_proj_weight", "layer.self_attn.out_proj.weight",
                            "layer.linear1.weight", "layer.linear2.weight"},
    "transformer-decoder": {"layer.self_attn.in_proj_weight", "layer.multihead_attn.in_proj_weight",
                            "layer.linear1.weight"},
    "lstm": {"layer.weight_ih_l0", "layer.weight_hh_l0_reverse", "layer.weight_ih_l1_reverse"},
    "gru": {"layer.weight_ih_l0", "layer.weight_hh_l0"},
}  # fmt: skip


@pytest.mark.parametrize("backend", ["masked", "sparse"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("layer", LAYERS)
def test_sequence_layers_are_sparse_and_exact(layer, optimizer, backend):
    torch.manual_seed(0)
    model = Encoder(LAYERS[layer]())
    build = {"sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
             "adamw": lambda p: torch.optim.AdamW(p, lr=0.01)}[optimizer]  # fmt: skip
    backend_object = (
        sm.SparseBackend(max_density=1.0, min_weights=0) if backend == "sparse" else backend
    )
    sparsifier = sm.SparseMomentum(model, build(model.parameters()), density=0.3, total_steps=100,
                                   update_interval=4, backend=backend_object)  # fmt: skip
    assert EXPECTED[layer] <= set(sparsifier.weights)
    assert "embed.weight" in sparsifier.dense_tensors  # embeddings only on request
    generator = torch.Generator().manual_seed(1)
    for _ in range(10):
        tokens = torch.randint(0, 16, (4, 5), generator=generator)
        sparsifier.optimizer.zero_grad()
        logits = model(tokens)
        nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
        sparsifier.step()
        for name, weight in sparsifier.weights.items():
            assert torch.all(weight[~sparsifier.masks[name]] == 0), name
    assert sparsifier.update_count == 2
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()


def test_an_embedding_is_sparse_when_asked_for_by_type_or_by_name():
    model = Encoder(nn.GRU(8, 8, batch_first=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    by_type = sm.SparseMomentum(model, optimizer, density=0.3, total_steps=10,
                                layer_types=(nn.Embedding, nn.Linear))  # fmt: skip
    assert set(by_type.weights) == {"embed.weight", "head.weight"}
    by_name = sm.SparseMomentum(model, optimizer, density=0.3, total_steps=10,
                                include=["embed.weight", "layer.*"])  # fmt: skip
    assert set(by_name.weights) == {"embed.weight", "layer.weight_ih_l0", "layer.weight_hh_l0"}


def test_separate_query_key_value_projections_are_three_masks():
    attention = nn.MultiheadAttention(8, 2, kdim=4, vdim=6)
    sparsifier = sm.Static(attention, torch.optim.SGD(attention.parameters(), lr=0.1), density=0.5)
    assert set(sparsifier.weights) == {"q_proj_weight", "k_proj_weight", "v_proj_weight",
                                       "out_proj.weight"}  # fmt: skip
