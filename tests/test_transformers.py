"""Spatial-T / Temporal-T: post-LN layer, anatomical SPE, sinusoidal TPE, padding masks."""

from __future__ import annotations

import torch
from torch import nn

from recognition.transformers import (
    PostNormEncoderLayer,
    SpatialTransformer,
    TemporalTransformer,
    entity_tree_depths,
    entity_tree_distances,
    over_entities,
    over_time,
    sinusoidal_positions,
)

torch.set_num_threads(1)
K6 = ["head", "face", "left_hand", "right_hand", "torso", "lower_body"]


def test_tree_follows_head_torso_limbs():
    assert entity_tree_depths(K6).tolist() == [0, 1, 2, 2, 1, 2]
    dist = entity_tree_distances(K6)
    assert torch.equal(dist, dist.t()) and torch.all(dist.diagonal() == 0)
    assert dist[0, 4] == 1  # head - torso
    assert dist[2, 3] == 2  # left hand - torso - right hand
    assert dist[1, 5] == 3  # face - head - torso - lower body


def test_layer_equals_torch_post_norm_encoder_layer():
    torch.manual_seed(0)
    ours = PostNormEncoderLayer(16, num_heads=4, ffn_dim=32, dropout=0.0).eval()
    ref = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation="gelu", batch_first=True, norm_first=False).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(ours.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(ours.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(ours.out_proj.weight)
        ref.self_attn.out_proj.bias.copy_(ours.out_proj.bias)
        ref.linear1.load_state_dict(ours.ffn[0].state_dict())
        ref.linear2.load_state_dict(ours.ffn[3].state_dict())
        ref.norm1.load_state_dict(ours.norm1.state_dict())
        ref.norm2.load_state_dict(ours.norm2.state_dict())
    x = torch.randn(3, 5, 16)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_spatial_position_encoding_breaks_entity_symmetry():
    x = torch.randn(2, 6, 16)
    perm = torch.tensor([1, 0, 2, 3, 4, 5])  # swap head and face
    plain = SpatialTransformer(16, entity_names=K6, num_layers=1, num_heads=4, ffn_dim=32, dropout=0.0,
                               depth_embedding=False, tree_bias=False).eval()
    assert torch.allclose(plain(x[:, perm]), plain(x)[:, perm], atol=1e-5)  # no SPE: equivariant
    spe = SpatialTransformer(16, entity_names=K6, num_layers=1, num_heads=4, ffn_dim=32, dropout=0.0).eval()
    with torch.no_grad():
        spe.distance_bias.copy_(torch.randn_like(spe.distance_bias))
    assert not torch.allclose(spe(x[:, perm]), spe(x)[:, perm], atol=1e-4)
    bias = spe.attention_bias()
    assert bias.shape == (1, 4, 6, 6)
    assert torch.equal(bias[0, :, 2, 3], spe.distance_bias[2])  # both hands: distance 2


def test_temporal_transformer_positions_and_padding():
    table = sinusoidal_positions(5, 8)
    assert torch.allclose(table[0], torch.tensor([0.0, 1.0] * 4))
    assert torch.isclose(table[3, 0], torch.sin(torch.tensor(3.0)))
    tt = TemporalTransformer(16, num_layers=2, num_heads=4, ffn_dim=32, dropout=0.0).eval()
    x = torch.randn(2, 6, 16)
    reversed_out = tt(x.flip(1)).flip(1)
    assert not torch.allclose(reversed_out, tt(x), atol=1e-4)  # order matters through TPE
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[:, 4:] = True
    noisy = x.clone()
    noisy[:, 4:] = torch.randn(2, 2, 16) * 10
    assert torch.allclose(tt(x, pad)[:, :4], tt(noisy, pad)[:, :4], atol=1e-5)


def test_over_entities_and_over_time_reshape_correctly():
    x = torch.randn(2, 3, 4, 5)
    seen = {}

    def record(name):
        def fn(y):
            seen[name] = y
            return y
        return fn

    assert torch.equal(over_entities(record("s"), x), x)
    assert torch.equal(seen["s"][1 * 3 + 2], x[1, 2])  # row = one frame's K entities
    assert torch.equal(over_time(record("t"), x), x)
    assert torch.equal(seen["t"][1 * 4 + 3], x[1, :, 3])  # row = one entity's T frames


def test_runs_under_autocast():
    spatial = SpatialTransformer(16, entity_names=K6, num_layers=1, num_heads=4, ffn_dim=32).eval()
    temporal = TemporalTransformer(16, num_layers=1, num_heads=4, ffn_dim=32).eval()
    x = torch.randn(2, 6, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert spatial(x).shape == (2, 6, 16)
        assert temporal(x, torch.zeros(2, 6, dtype=torch.bool)).shape == (2, 6, 16)
