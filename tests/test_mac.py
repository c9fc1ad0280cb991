"""MAC loss (Eq. 16-17): aligned paths beat shuffled ones, confidence weighting, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from recognition.mac import frame_level_mac, mac_loss, video_level_mac

torch.set_num_threads(1)


def paths(b=3, t=6, k=4, d=16, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_st = torch.randn(b, t, k, d, generator=g)
    x_ts = x_st + noise * torch.randn(b, t, k, d, generator=g)
    return x_st, x_ts


def test_frame_level_aligned_beats_time_shuffled():
    x_st, x_ts = paths()
    aligned = frame_level_mac(x_st, x_ts)
    shuffled = frame_level_mac(x_st, x_ts[:, torch.tensor([3, 0, 5, 1, 2, 4])])
    assert aligned < 0.1 < shuffled


def test_video_level_aligned_beats_batch_shuffled():
    x_st, x_ts = paths()
    aligned = video_level_mac(x_st, x_ts)
    shuffled = video_level_mac(x_st, x_ts[torch.tensor([1, 2, 0])])
    assert aligned < 0.1 < shuffled
    # only the temporal average matters at video level: reordering frames costs nothing
    assert torch.isclose(video_level_mac(x_st, x_ts[:, torch.randperm(6)]), aligned, atol=1e-5)


def test_frame_level_matches_eq16_by_hand():
    x_st, x_ts = torch.randn(1, 3, 1, 4), torch.randn(1, 3, 1, 4)
    z_st = x_st[0, :, 0] / x_st[0, :, 0].norm(dim=-1, keepdim=True)
    z_ts = x_ts[0, :, 0] / x_ts[0, :, 0].norm(dim=-1, keepdim=True)
    conf = torch.tensor([0.2, 1.0, 0.5])
    terms = []
    for t in range(3):
        sims = torch.stack([z_st[t] @ z_ts[j] for j in range(3)]) / 0.07
        terms.append(-(sims[t] - torch.logsumexp(sims, 0)))
    expected = (torch.stack(terms) * conf).sum() / conf.sum()
    got = frame_level_mac(x_st, x_ts, conf.view(1, 3, 1), temperature=0.07)
    assert torch.isclose(got, expected, atol=1e-5)


def test_confidence_weights_drop_occluded_entities():
    x_st, x_ts = paths(b=2, t=4, k=2, noise=0.05)
    x_ts[:, :, 1] = torch.randn(2, 4, 16)  # entity 1 disagrees between paths
    conf = torch.ones(2, 4, 2)
    conf[:, :, 1] = 0.0  # ... but it is invisible
    for level in ("frame", "video"):
        weighted = mac_loss(x_st, x_ts, conf, level=level)
        uniform = mac_loss(x_st, x_ts, None, level=level)
        assert weighted < uniform


def test_uniform_similarity_gives_log_of_candidates():
    x = torch.ones(2, 5, 3, 8)
    assert torch.isclose(frame_level_mac(x, x), torch.tensor(math.log(5)), atol=1e-5)
    assert torch.isclose(video_level_mac(x, x), torch.tensor(math.log(6)), atol=1e-5)


@pytest.mark.parametrize("level", ["frame", "video"])
def test_gradient_reaches_both_paths(level):
    x_st, x_ts = paths(noise=1.0)
    x_st.requires_grad_(True)
    x_ts.requires_grad_(True)
    mac_loss(x_st, x_ts, torch.rand(3, 6, 4), level=level).backward()
    assert x_st.grad.abs().sum() > 0 and x_ts.grad.abs().sum() > 0


def test_unknown_level_is_an_error():
    with pytest.raises(ValueError, match="unknown MAC level"):
        mac_loss(*paths(), level="clip")
