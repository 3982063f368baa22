"""Heads removed from an attention compute what the attention with those heads gated off
computes (course_utils.heads), on small random blocks, batch first or not, with and without
biases; a plan that names a head twice, a head that does not exist, or every head is refused
before anything changes."""

import copy

import pytest
import torch
from torch import nn

from course_utils.graph import SurgeryError
from course_utils.heads import HeadAttention, gate_heads, remove_heads


def attention(bias=True, batch_first=True, heads=4, embed=16):
    torch.manual_seed(0)
    return nn.MultiheadAttention(embed, heads, bias=bias, batch_first=batch_first).eval()


def tokens(batch_first, embed=16):
    x = torch.randn(3, 5, embed)  # (batch, tokens, embed)
    return x if batch_first else x.transpose(0, 1)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
def test_removed_heads_compute_what_gated_heads_compute(bias, batch_first):
    dense, x = attention(bias, batch_first), tokens(batch_first)
    smaller = remove_heads(dense, [1, 3])
    gated = gate_heads(copy.deepcopy(dense), [1, 3])
    assert smaller.num_heads == 2 and smaller.head_dim == dense.head_dim
    assert smaller.q.weight.shape == (8, 16) and smaller.out_proj.weight.shape == (16, 8)
    torch.testing.assert_close(smaller(x, x, x, need_weights=False)[0], gated(x, x, x, need_weights=False)[0],
                               atol=1e-5, rtol=1e-5)
    assert not torch.allclose(smaller(x, x, x)[0], dense(x, x, x)[0], atol=1e-3)  # the heads did matter


def test_a_head_attention_keeps_no_head_it_lost_and_can_lose_more():
    dense, x = attention(), tokens(True)
    once = remove_heads(remove_heads(dense, [0]), [1])  # heads 1 and 2 of the original remain
    twice = remove_heads(dense, [0, 2])
    torch.testing.assert_close(once(x, x, x)[0], twice(x, x, x)[0], atol=1e-5, rtol=1e-5)
    assert isinstance(once, HeadAttention) and once.num_heads == 2


def test_removing_nothing_changes_nothing():
    dense, x = attention(), tokens(True)
    torch.testing.assert_close(remove_heads(dense, [])(x, x, x)[0], dense(x, x, x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("heads, reason", [([1, 1], "named twice"), ([4], "heads 0 to 3"),
                                           ([0, 1, 2, 3], "keep at least one"), ([True], "whole numbers")])
def test_a_bad_plan_is_refused_before_anything_changes(heads, reason):
    dense = attention()
    before = copy.deepcopy(dense.state_dict())
    with pytest.raises(SurgeryError, match=reason):
        remove_heads(dense, heads)
    with pytest.raises(SurgeryError, match=reason):
        gate_heads(dense, heads)
    assert all(torch.equal(before[k], v) for k, v in dense.state_dict().items())


def test_cross_attention_is_refused_by_the_smaller_module():
    smaller, x = remove_heads(attention(), [0]), tokens(True)
    with pytest.raises(NotImplementedError, match="self-attention only"):
        smaller(x, x.clone(), x)


def test_a_torchvision_vision_transformer_runs_on_with_fewer_heads():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=16, mlp_dim=32,
                              num_classes=10).eval()
    gated, x = copy.deepcopy(model), torch.randn(2, 3, 32, 32)
    for layer, heads in (("encoder_layer_0", [0, 2]), ("encoder_layer_1", [3])):
        block = model.encoder.layers.get_submodule(layer)
        block.self_attention = remove_heads(block.self_attention, heads)
        gate_heads(gated.encoder.layers.get_submodule(layer).self_attention, heads)
    torch.testing.assert_close(model(x), gated(x), atol=1e-5, rtol=1e-5)
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters < sum(p.numel() for p in gated.parameters())
