"""Character-level language models: a small decoder-only Transformer and a 2-layer LSTM.

``gpt-char`` follows nanoGPT's CPU configuration (4 layers, 4 heads, 128 dimensions, a
64-character context): pre-LayerNorm blocks of causal self-attention and a GELU MLP, learned
position embeddings, GPT-2's initialisation. The query/key/value projection is one Linear
layer (``c_attn``), so the sparse backend runs it on its kernels with the tokens as rows;
the attention products themselves stay dense. ``gpt-char-tied`` shares the token embedding
with the output layer; by the targets' rule for tied tensors that matrix then stays dense
unless named in ``include``. ``lstm-char``: an embedding, two LSTM layers of 256, a Linear
head. Each maps tokens [B, T] to next-token logits [B, T, vocabulary].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..inputs import CHARACTERS
from .registry import register_model


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, width = x.shape
        q, k, v = (
            part.reshape(batch, time, self.heads, width // self.heads).transpose(1, 2)
            for part in self.c_attn(x).split(width, dim=2)
        )
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        return self.c_proj(y.transpose(1, 2).reshape(batch, time, width))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Tokens [B, T] (T <= block) -> logits [B, T, vocabulary]."""

    def __init__(self, vocabulary: int, layers: int = 4, heads: int = 4, width: int = 128,
                 block: int = 64, dropout: float = 0.0, tied: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.wte = nn.Embedding(vocabulary, width)
        self.wpe = nn.Embedding(block, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocabulary, bias=False)
        if tied:
            self.lm_head.weight = self.wte.weight
        self.apply(self._initialise)
        for name, parameter in self.named_parameters():  # GPT-2: residual projections scaled
            if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(parameter, 0.0, 0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _initialise(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.drop(self.wte(tokens) + self.wpe(positions))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class CharLSTM(nn.Module):
    """Tokens [B, T] -> logits [B, T, vocabulary] through two LSTM layers."""

    def __init__(self, vocabulary: int, embedding: int = 128, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, embedding)
        self.lstm = nn.LSTM(embedding, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocabulary)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(self.embed(tokens))
        return self.head(output)


@register_model("gpt-char", inputs=(CHARACTERS,))
def gpt_char(num_classes: int = 84) -> nn.Module:
    return GPT(num_classes)


@register_model("gpt-char-tied", inputs=(CHARACTERS,))
def gpt_char_tied(num_classes: int = 84) -> nn.Module:
    return GPT(num_classes, tied=True)


@register_model("lstm-char", inputs=(CHARACTERS,))
def lstm_char(num_classes: int = 84) -> nn.Module:
    return CharLSTM(num_classes)
