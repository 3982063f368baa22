"""Attention heads removed for real, or gated off (the first step of transformer surgery).

    smaller = remove_heads(attention, [0, 5])   # nn.MultiheadAttention, Swin's window attention (v1, v2)
    gate_heads(attention, [0, 5])                # in place: those heads' outputs count for nothing

A head is a slice of `head_dim` rows of the query, key and value projections and the same
columns of the output projection (in Swin also its column of the relative position bias, or
of the bias MLP's last layer, and its logit scale). torch's `nn.MultiheadAttention` and
torchvision's Swin window attention tie a head's width to the model's (`embed_dim // heads`),
so fewer heads need modules of their own: `HeadAttention` (called as torchvision's ViT calls its
attention, `attention(x, x, x, need_weights=False)`) and `WindowHeadAttention` (called on
N x H x W x C maps, as Swin calls it) compute what the attention with the removed heads gated to
zero computes.
"""

from __future__ import annotations

import copy
import math
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


class WindowHeadAttention(nn.Module):
    """Swin's shifted window attention (torchvision's v1 or v2) keeping the heads `kept` of
    `source`, each `head_dim` channels wide whatever the embedding width: windows of
    `window_size` tokens, shifted by `shift_size`, each head's scores plus its relative position
    bias (v2: cosine scores scaled by the head's logit scale, the bias from a small MLP)."""

    def __init__(self, source: nn.Module, kept: Sequence[int]):
        super().__init__()
        kept = list(kept)
        self.embed_dim, self.head_dim = source.proj.out_features, source.proj.in_features // source.num_heads
        self.num_heads, self.cosine = len(kept), hasattr(source, "logit_scale")
        self.window_size, self.shift_size = list(source.window_size), list(source.shift_size)
        self.attention_dropout, self.dropout = source.attention_dropout, source.dropout
        self.gates: torch.Tensor | None = None  # (batch, heads) or (heads,): each head's output scaled by its gate
        rows = _kept_rows(source, [h for h in range(source.num_heads) if h not in kept])
        inner = source.proj.in_features
        self.qkv = _sliced(source.qkv, rows=torch.cat([rows, rows + inner, rows + 2 * inner]))
        self.proj = _sliced(source.proj, columns=rows)
        self.register_buffer("relative_position_index", source.relative_position_index.clone())
        if self.cosine:
            self.logit_scale = nn.Parameter(source.logit_scale.detach()[kept].clone())
            self.register_buffer("relative_coords_table", source.relative_coords_table.clone())
            self.cpb_mlp = nn.Sequential(*[copy.deepcopy(m) for m in source.cpb_mlp[:-1]],
                                         _sliced(source.cpb_mlp[-1], rows=torch.tensor(kept)))
        else:
            self.relative_position_bias_table = nn.Parameter(source.relative_position_bias_table.detach()[:, kept].clone())

    def position_bias(self) -> torch.Tensor:
        """(1, heads, tokens, tokens): each head's bias for a pair of positions in a window."""
        table = 16 * torch.sigmoid(self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)) \
            if self.cosine else self.relative_position_bias_table
        tokens = self.window_size[0] * self.window_size[1]
        return table[self.relative_position_index].view(tokens, tokens, -1).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x):
        batch, height, width, channels = x.shape
        (wh, ww), inner = self.window_size, self.num_heads * self.head_dim
        x = F.pad(x, (0, 0, 0, -width % ww, 0, -height % wh))
        padded_h, padded_w = x.shape[1:3]
        shift = [s if w < size else 0 for s, w, size in zip(self.shift_size, self.window_size, (padded_h, padded_w))]
        if any(shift):
            x = x.roll((-shift[0], -shift[1]), dims=(1, 2))
        windows = _windows(x, wh, ww)  # (batch x windows, tokens, channels)
        bias = self.qkv.bias
        if self.cosine and bias is not None:  # v2 learns no key bias
            bias = torch.cat([bias[:inner], torch.zeros_like(bias[inner:2 * inner]), bias[2 * inner:]])
        q, k, v = F.linear(windows, self.qkv.weight, bias).unflatten(-1, (3, self.num_heads, self.head_dim)) \
            .permute(2, 0, 3, 1, 4)
        if self.cosine:
            scores = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
            scores = scores * self.logit_scale.clamp(max=math.log(100.0)).exp()
        else:
            scores = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)
        scores = scores + self.position_bias()
        count = (padded_h // wh) * (padded_w // ww)
        if any(shift):  # tokens rolled in from the other side of the map do not attend to each other
            scores = (scores.view(batch, count, self.num_heads, wh * ww, wh * ww)
                      + _shift_mask(padded_h, padded_w, wh, ww, shift, x.device)[None, :, None]).flatten(0, 1)
        mixed = F.dropout(scores.softmax(-1), self.attention_dropout, self.training) @ v
        if self.gates is not None:  # the paper's gate on each head's output, one per image
            mixed = (mixed.view(batch, count, self.num_heads, wh * ww, self.head_dim)
                     * self.gates.reshape(-1, 1, self.num_heads, 1, 1)).flatten(0, 1)
        out = F.dropout(self.proj(mixed.transpose(1, 2).reshape(batch * count, wh * ww, inner)), self.dropout,
                        self.training)
        out = out.view(batch, padded_h // wh, padded_w // ww, wh, ww, channels).permute(0, 1, 3, 2, 4, 5) \
            .reshape(batch, padded_h, padded_w, channels)
        if any(shift):
            out = out.roll((shift[0], shift[1]), dims=(1, 2))
        return out[:, :height, :width].contiguous()


def _windows(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    batch, height, width, channels = x.shape
    return x.view(batch, height // wh, wh, width // ww, ww, channels).permute(0, 1, 3, 2, 4, 5) \
        .reshape(-1, wh * ww, channels)


def _shift_mask(height: int, width: int, wh: int, ww: int, shift: list[int], device) -> torch.Tensor:
    """(windows, tokens, tokens): -100 between tokens of different regions of the rolled map."""
    def regions(size, window, s):  # 0, 1, 2: before the last window, in it before the shift, the shift
        index = torch.arange(size, device=device)
        return (index >= size - window).long() + (index >= size - s).long()
    label = (3 * regions(height, wh, shift[0])[:, None] + regions(width, ww, shift[1])[None, :]).float()
    label = _windows(label[None, :, :, None], wh, ww).squeeze(-1)
    return (label[:, :, None] != label[:, None, :]).float() * -100.0


@torch.no_grad()
def _sliced(linear: nn.Linear, rows: torch.Tensor | None = None, columns: torch.Tensor | None = None) -> nn.Linear:
    """A copy of `linear` keeping only those output rows (and their biases) or input columns."""
    weight = linear.weight.detach()
    weight = weight[rows.to(weight.device)] if rows is not None else weight
    weight = weight[:, columns.to(weight.device)] if columns is not None else weight
    smaller = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None).to(weight.device, weight.dtype)
    smaller.weight.copy_(weight)
    if linear.bias is not None:
        smaller.bias.copy_(linear.bias[rows.to(weight.device)] if rows is not None else linear.bias)
    return smaller


def attention_heads(module: nn.Module) -> int | None:
    """The number of heads of an attention layer the course knows (torch's
    nn.MultiheadAttention, a HeadAttention, torchvision's Swin window attention), else None."""
    if isinstance(module, (nn.MultiheadAttention, HeadAttention)) or _is_window_attention(module):
        return module.num_heads
    return None


def heads_refused(attention: nn.Module) -> str | None:
    """Why heads cannot be removed from this attention layer (they can still be gated), or None."""
    if isinstance(attention, nn.MultiheadAttention):
        if not attention._qkv_same_embed_dim:
            return "an nn.MultiheadAttention with its own key and value widths (kdim, vdim) is not handled"
        if attention.bias_k is not None or attention.add_zero_attn:
            return "an nn.MultiheadAttention with add_bias_kv or add_zero_attn is not handled"
    return None


def _is_window_attention(module: nn.Module) -> bool:
    return isinstance(module, WindowHeadAttention) or type(module).__name__ in (
        "ShiftedWindowAttention", "ShiftedWindowAttentionV2") and hasattr(module, "qkv") and hasattr(module, "proj")


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
    head_dim = _output_projection(attention).in_features // attention.num_heads
    kept = [h for h in range(attention.num_heads) if h not in removed]
    return torch.tensor([h * head_dim + i for h in kept for i in range(head_dim)], dtype=torch.long)


@torch.no_grad()
def remove_heads(attention: nn.Module, heads: Sequence[int]) -> HeadAttention | WindowHeadAttention:
    """A `HeadAttention` (a `WindowHeadAttention` for Swin) without `heads`: it computes what
    `attention` computes with those heads' outputs gated to zero (`gate_heads`). `attention`
    itself is left as it was."""
    removed = check_heads(attention, heads)
    if _is_window_attention(attention):
        kept = [h for h in range(attention.num_heads) if h not in removed]
        return WindowHeadAttention(attention, kept).to(attention.qkv.weight.device).train(attention.training)
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
