"""Heads removed from an attention compute what the attention with those heads gated off
computes (course_utils.heads), on small random blocks, batch first or not, with and without
biases; a plan that names a head twice, a head that does not exist, or every head is refused
before anything changes; the graph sees a ViT's attention layers and MLP width, and one plan
removes both; a Swin head (v1, v2) gated has its output zeroed, and removed computes the same,
with shifted windows, padding and a window as large as the map."""

import copy

import pytest
import torch
from torch import nn

from course_utils.graph import ModelGraph, SurgeryError
from course_utils.heads import HeadAttention, gate_heads, remove_heads
from course_utils.surgery import mask, remove


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


def small_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=16, mlp_dim=32,
                             num_classes=10).eval()


def test_a_torchvision_vision_transformer_runs_on_with_fewer_heads():
    model = small_vit()
    gated, x = copy.deepcopy(model), torch.randn(2, 3, 32, 32)
    for layer, heads in (("encoder_layer_0", [0, 2]), ("encoder_layer_1", [3])):
        block = model.encoder.layers.get_submodule(layer)
        block.self_attention = remove_heads(block.self_attention, heads)
        gate_heads(gated.encoder.layers.get_submodule(layer).self_attention, heads)
    torch.testing.assert_close(model(x), gated(x), atol=1e-5, rtol=1e-5)
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters < sum(p.numel() for p in gated.parameters())


ATTENTION_0 = "encoder.layers.encoder_layer_0.self_attention"
MLP_1 = "encoder.layers.encoder_layer_1.mlp.0"


def test_a_plan_names_heads_and_mlp_channels_and_removal_equals_masking():
    """The graph sees a ViT's attention layers and the MLPs' hidden width; the residual stream
    is refused, saying why; one plan removes both, and the pruned model traces again."""
    model, x = small_vit(), torch.randn(2, 3, 32, 32)
    graph = ModelGraph(model, x)
    assert graph.attentions == {ATTENTION_0: 4, "encoder.layers.encoder_layer_1.self_attention": 4}
    mlps = [g.convs[0] for g in graph.groups if g.prunable]
    assert mlps == ["encoder.layers.encoder_layer_0.mlp.0", MLP_1]
    stream = graph.group_of("conv_proj")
    assert not stream.prunable and "LayerNorm" in stream.reason and "encoder.layers.encoder_layer_0.mlp.3" in stream.convs
    plan = {ATTENTION_0: [1, 2], MLP_1: [0, 5, 7, 31]}
    masked = mask(graph.copy(), plan)
    pruned = remove(graph, plan)
    torch.testing.assert_close(pruned.model(x), masked(x), atol=1e-5, rtol=1e-5)
    assert pruned.model.get_submodule(ATTENTION_0).num_heads == 2
    assert pruned.model.get_submodule(MLP_1).out_features == 28
    again = ModelGraph(pruned.model, x)  # the smaller attention is traced as one layer
    assert again.attentions[ATTENTION_0] == 2 and again.group_of(MLP_1).channels == 28


@pytest.mark.parametrize("heads, reason", [([1, 1], "named twice"), ([0, 1, 2, 3], "keep at least one")])
def test_a_graph_plan_with_bad_heads_changes_nothing(heads, reason):
    model, x = small_vit(), torch.randn(2, 3, 32, 32)
    graph, before = ModelGraph(model, x), copy.deepcopy(model.state_dict())
    with pytest.raises(SurgeryError, match=reason):
        remove(graph, {MLP_1: [0, 1], ATTENTION_0: heads})
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def swin_block():
    from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2

    torch.manual_seed(0)
    return [kind(16, [4, 4], [2, 2], 4).eval() for kind in (ShiftedWindowAttention, ShiftedWindowAttentionV2)]


@pytest.mark.parametrize("version", [0, 1], ids=["v1", "v2"])
def test_gating_a_swin_head_zeroes_its_output_and_removing_it_computes_the_same(version):
    attention, x = swin_block()[version], torch.randn(2, 8, 8, 16)
    silent = copy.deepcopy(attention)  # head 1's values zeroed: its output is zero, however it attends
    with torch.no_grad():
        silent.qkv.weight[32 + 4:32 + 8] = 0  # the value rows of head 1 (4 channels of 16)
        silent.qkv.bias[32 + 4:32 + 8] = 0
        expected, dense = silent(x), attention(x)
        gated = gate_heads(copy.deepcopy(attention), [1])(x)
        assert torch.allclose(gated, expected, atol=1e-5) and not torch.allclose(gated, dense, atol=1e-3)
        smaller = remove_heads(attention, [1])
        assert smaller.num_heads == 3 and smaller.qkv.out_features == 36 and smaller.proj.in_features == 12
        assert torch.allclose(smaller(x), expected, atol=1e-5)
        assert torch.allclose(remove_heads(attention, [])(x), dense, atol=1e-6)  # the same code, every head kept


@pytest.mark.parametrize("version", [0, 1], ids=["v1", "v2"])
@pytest.mark.parametrize("size", [7, 4], ids=["padded", "one window"])
def test_swin_heads_removed_twice_equal_them_gated_on_padded_maps(version, size):
    attention, x = swin_block()[version], torch.randn(2, size, size, 16)
    with torch.no_grad():
        for parameter in attention.parameters():  # every bias and scale away from its initial value
            parameter.add_(0.1 * torch.randn_like(parameter))
        gated = gate_heads(copy.deepcopy(attention), [0, 1, 3])(x)
        twice = remove_heads(remove_heads(attention, [1, 3]), [0])  # head 0 of the two left is the first
        assert twice.num_heads == 1 and torch.allclose(twice(x), gated, atol=1e-5)