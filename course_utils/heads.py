"""Attention heads removed for real, or gated off (the first step of transformer surgery).

    smaller = remove_heads(attention, [0, 5])   # an nn.MultiheadAttention (or a HeadAttention)
    gate_heads(attention, [0, 5])                # in place: those heads' outputs count for nothing

A head is a slice of `head_dim` rows of the query, key and value projections and the same
columns of the output projection. torch's `nn.MultiheadAttention` ties its inner width to the
model's (`embed_dim`), so fewer heads need a module of its own: `HeadAttention` computes what
the attention with the removed heads gated to zero computes, and is called as torchvision's
ViT calls its attention (`attention(x, x, x, need_weights=False)`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SurgeryError


class HeadAttention(nn.Module):
    """Self-attention with `heads` heads of `head_dim` channels each over an `embed_dim`-wide
    input: separate query, key and value projections and an output projection back to
    `embed_dim`. Called like `nn.MultiheadAttention` for self-attention (query, key and value
    the same tensor, no masks); returns (output, None)."""

    def __init__(self, embed_dim: int, heads: int, head_dim: int, bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        inner = heads * head_dim
        self.num_heads, self.head_dim, self.batch_first, self.dropout = heads, head_dim, batch_first, dropout
        self.embed_dim = embed_dim
        self.gates: torch.Tensor | None = None  # (batch, heads) or (heads,): each head's output scaled by its gate
        self.q, self.k, self.v = (nn.Linear(embed_dim, inner, bias=bias) for _ in range(3))
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if key is not query or value is not query or key_padding_mask is not None or attn_mask is not None \
                or is_causal:
            raise NotImplementedError("a pruned attention does self-attention only: query, key and value the same "
                                      "tensor, no masks")
        x = query if self.batch_first else query.transpose(0, 1)  # (batch, tokens, embed)
        batch, tokens, _ = x.shape
        q, k, v = (projection(x).view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)
                   for projection in (self.q, self.k, self.v))
        mixed = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        if self.gates is not None:  # the paper's gate on each head's output (head_scores.head_importance)
            mixed = mixed * self.gates.reshape(-1, self.num_heads, 1, 1)
        out = self.out_proj(mixed.transpose(1, 2).reshape(batch, tokens, -1))
        return (out if self.batch_first else out.transpose(0, 1)), None


def attention_heads(module: nn.Module) -> int | None:
    """The number of heads of an attention layer the course knows (torch's
    nn.MultiheadAttention, a HeadAttention, torchvision's Swin window attention), else None."""
    if isinstance(module, (nn.MultiheadAttention, HeadAttention)) or _is_window_attention(module):
        return module.num_heads
    return None


def heads_refused(attention: nn.Module) -> str | None:
    """Why heads cannot be removed from this attention layer (they can still be gated), or None."""
    if _is_window_attention(attention):
        return (f"torchvision's {type(attention).__name__} derives each head's width from the embedding "
                f"width, so a Swin block with fewer heads needs an attention written anew; its heads can be "
                f"gated (masked), not removed")
    if isinstance(attention, nn.MultiheadAttention):
        if not attention._qkv_same_embed_dim:
            return "an nn.MultiheadAttention with its own key and value widths (kdim, vdim) is not handled"
        if attention.bias_k is not None or attention.add_zero_attn:
            return "an nn.MultiheadAttention with add_bias_kv or add_zero_attn is not handled"
    return None


def _is_window_attention(module: nn.Module) -> bool:
    return type(module).__name__ in ("ShiftedWindowAttention", "ShiftedWindowAttentionV2") and \
        hasattr(module, "qkv") and hasattr(module, "proj")


def _output_projection(attention: nn.Module) -> nn.Linear:
    return attention.proj if _is_window_attention(attention) else attention.out_proj


def check_heads(attention: nn.Module, heads: Sequence[int]) -> list[int]:
    """The heads to act on, sorted; refused (before anything changes) when one is named twice,
    does not exist, or when every head of the layer would go."""
    count = attention_heads(attention)
    if count is None:
        raise SurgeryError(f"heads belong to an attention layer (nn.MultiheadAttention, HeadAttention, "
                           f"Swin's window attention), not a {type(attention).__name__}")
    named = list(heads)
    if any(isinstance(h, bool) or not isinstance(h, int) for h in named):
        raise SurgeryError(f"heads are whole numbers, got {named!r}")
    if len(set(named)) != len(named):
        raise SurgeryError(f"a head is named twice in {named}")
    if not all(0 <= h < count for h in named):
        raise SurgeryError(f"the attention has heads 0 to {count - 1}, not {sorted(set(named) - set(range(count)))}")
    if len(named) == count:
        raise SurgeryError(f"all {count} heads of the layer would go: keep at least one")
    return sorted(named)


def _projections(attention: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """The query, key and value weights and biases of either attention, as (inner, embed) tensors."""
    if isinstance(attention, HeadAttention):
        linears = (attention.q, attention.k, attention.v)
        return [m.weight for m in linears], [m.bias for m in linears]
    refused = heads_refused(attention)
    if refused:
        raise SurgeryError(refused)
    weights = attention.in_proj_weight.chunk(3)
    biases = attention.in_proj_bias.chunk(3) if attention.in_proj_bias is not None else (None,) * 3
    return list(weights), list(biases)


def _kept_rows(attention: nn.Module, removed: list[int]) -> torch.Tensor:
    head_dim = attention.head_dim
    kept = [h for h in range(attention.num_heads) if h not in removed]
    return torch.tensor([h * head_dim + i for h in kept for i in range(head_dim)], dtype=torch.long)


@torch.no_grad()
def remove_heads(attention: nn.Module, heads: Sequence[int]) -> HeadAttention:
    """A `HeadAttention` without `heads`: it computes what `attention` computes with those
    heads' outputs gated to zero (`gate_heads`). `attention` itself is left as it was."""
    removed = check_heads(attention, heads)
    weights, biases = _projections(attention)
    rows = _kept_rows(attention, removed).to(weights[0].device)
    embed_dim = attention.out_proj.out_features
    smaller = HeadAttention(embed_dim, attention.num_heads - len(removed), attention.head_dim,
                            bias=biases[0] is not None, batch_first=attention.batch_first,
                            dropout=attention.dropout).to(weights[0].device, weights[0].dtype)
    for linear, weight, bias in zip((smaller.q, smaller.k, smaller.v), weights, biases):
        linear.weight.copy_(weight[rows])
        if bias is not None:
            linear.bias.copy_(bias[rows])
    smaller.out_proj.weight.copy_(attention.out_proj.weight[:, rows])
    if attention.out_proj.bias is not None:
        smaller.out_proj.bias.copy_(attention.out_proj.bias)
    return smaller.train(attention.training)


@torch.no_grad()
def gate_heads(attention: nn.Module, heads: Sequence[int]) -> nn.Module:
    """Gate `heads` off in place: the output projection's columns that read them are zeroed, so
    the layer computes what it would with those heads' outputs multiplied by 0 (the paper's
    gate). Returns `attention`."""
    removed = check_heads(attention, heads)
    projection = _output_projection(attention)
    head_dim = projection.in_features // attention.num_heads
    for head in removed:
        projection.weight[:, head * head_dim:(head + 1) * head_dim] = 0
    return attention
