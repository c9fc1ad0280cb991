"""Entity routing (Eq. 13-15): parameter count, normalised weights, prior and temperature."""

from __future__ import annotations

import torch

from recognition.routing import EntityRouting, routing_parameter_count

torch.set_num_threads(1)


def test_parameter_count_matches_formula():
    routing = EntityRouting(6, 256)
    count = sum(p.numel() for p in routing.parameters())
    assert count == routing_parameter_count(6, 256) == 6 * (512 * 128 + 128 + 2 * 128 + 128 * 2 + 2 + 2)
    assert 0.35e6 < count < 0.55e6  # "about 0.5M"
    assert sum(p.numel() for p in EntityRouting(5, 64).parameters()) == routing_parameter_count(5, 64)


def test_router_layout_and_zero_prior():
    routing = EntityRouting(2, 8)
    layers = [type(m).__name__ for m in routing.routers[0]]
    assert layers == ["Linear", "LayerNorm", "ReLU", "Dropout", "Linear"]
    assert routing.routers[0][0].in_features == 16 and routing.routers[0][0].out_features == 4
    assert torch.all(routing.prior == 0)


def test_weights_sum_to_one_and_fuse_convexly():
    routing = EntityRouting(3, 8).eval()
    x_st, x_ts = torch.randn(2, 4, 3, 8), torch.randn(2, 4, 3, 8)
    fused, weights = routing(x_st, x_ts)
    assert weights.shape == (2, 4, 3, 2)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 3))
    assert torch.allclose(fused, weights[..., :1] * x_st + weights[..., 1:] * x_ts)


def test_prior_is_per_entity_and_temperature_sharpens():
    routing = EntityRouting(2, 8).eval()
    with torch.no_grad():
        for router in routing.routers:
            router[-1].weight.zero_()
            router[-1].bias.zero_()
        routing.prior.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.randn(1, 1, 2, 8)
    _, w = routing(x, x)
    assert w[0, 0, 0, 0] > 0.5 and w[0, 0, 1, 1] > 0.5  # entity 0 prefers ST, entity 1 TS
    assert torch.isclose(w[0, 0, 0, 0], torch.sigmoid(torch.tensor(1.0)))
    routing.temperature = 0.7
    _, sharp = routing(x, x)
    assert sharp[0, 0, 0, 0] > w[0, 0, 0, 0]
