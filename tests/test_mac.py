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
    # entities are not each other's negatives: permuting entities inside every clip the same way
    # (a different but consistent assignment) leaves the same-entity contrast unchanged
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.isclose(video_level_mac(x_st[:, :, perm], x_ts[:, :, perm]), aligned, atol=1e-5)
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
    assert torch.isclose(video_level_mac(x, x), torch.tensor(math.log(2)), atol=1e-5)  # B = 2 clips
    assert video_level_mac(x[:1], x[:1]) == 0  # one clip: no other clip to contrast with


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


def _video_mac_by_hand(x_st, x_ts, conf, tau):
    """Same-entity InfoNCE over clips, written out with loops."""
    b, _, k, _ = x_st.shape
    num = den = 0.0
    for i in range(k):
        for a in range(b):
            za = x_st[a, :, i].mean(0)
            za = za / za.norm()
            sims = []
            for c in range(b):
                zc = x_ts[c, :, i].mean(0)
                sims.append(float(za @ (zc / zc.norm())) / tau)
            term = -(sims[a] - math.log(sum(math.exp(s) for s in sims)))
            w = float(conf[a, :, i].mean())
            num, den = num + w * term, den + w
    return num / den


def _frame_mac_by_hand(x_st, x_ts, conf, tau):
    b, t, k, _ = x_st.shape
    num = den = 0.0
    for a in range(b):
        for i in range(k):
            for s_ in range(t):
                zs = x_st[a, s_, i] / x_st[a, s_, i].norm()
                sims = [float(zs @ (x_ts[a, j, i] / x_ts[a, j, i].norm())) / tau for j in range(t)]
                term = -(sims[s_] - math.log(sum(math.exp(v) for v in sims)))
                w = float(conf[a, s_, i])
                num, den = num + w * term, den + w
    return num / den


@pytest.mark.parametrize("level", ["frame", "video"])
def test_mac_with_several_clips_and_entities_matches_hand_computation(level):
    g = torch.Generator().manual_seed(3)
    x_st, x_ts = torch.randn(3, 4, 2, 5, generator=g), torch.randn(3, 4, 2, 5, generator=g)
    conf = torch.rand(3, 4, 2, generator=g)
    by_hand = (_video_mac_by_hand if level == "video" else _frame_mac_by_hand)(x_st, x_ts, conf, 0.5)
    got = mac_loss(x_st, x_ts, conf, temperature=0.5, level=level)
    assert abs(float(got) - by_hand) < 1e-4


def test_confidence_of_the_wrong_shape_is_an_error():
    x_st, x_ts = paths(b=2, t=4, k=3)
    with pytest.raises(ValueError, match=r"\(B, T, K\)"):
        mac_loss(x_st, x_ts, torch.ones(2, 4, 6))


def _split_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 4, 3, 6, generator=g), torch.randn(8, 4, 3, 6, generator=g), torch.rand(8, 4, 3, generator=g)


def _split_worker(rank, world, init_file, result_file):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x_st, x_ts, conf = _split_batch()
        rows = slice(0, 5) if rank == 0 else slice(5, 8)  # uneven shards, as a last batch can be
        results = {}
        for level in ("video", "frame"):
            st, ts = x_st[rows].clone().requires_grad_(True), x_ts[rows].clone().requires_grad_(True)
            loss = mac_loss(st, ts, conf[rows], level=level)
            loss.backward()
            # the engine averages the logged losses over processes and DDP averages the gradients
            losses = [torch.zeros(1) for _ in range(world)]
            dist.all_gather(losses, loss.detach().view(1))
            full_st, full_ts = torch.zeros_like(x_st), torch.zeros_like(x_ts)
            full_st[rows], full_ts[rows] = st.grad / world, ts.grad / world
            dist.all_reduce(full_st)
            dist.all_reduce(full_ts)
            results[level] = {"losses": torch.cat(losses), "grad_st": full_st, "grad_ts": full_ts}
        if rank == 0:
            torch.save(results, result_file)
    finally:
        dist.destroy_process_group()


def test_mac_does_not_depend_on_how_the_batch_is_split_over_processes(tmp_path):
    """One batch of 8 on one process == the same 8 clips split 5 + 3 over two gloo processes."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    result = tmp_path / "result.pt"
    mp.spawn(_split_worker, args=(2, str(tmp_path / "init"), str(result)), nprocs=2, join=True)
    split = torch.load(result, weights_only=True)
    x_st, x_ts, conf = _split_batch()
    for level in ("video", "frame"):
        st, ts = x_st.clone().requires_grad_(True), x_ts.clone().requires_grad_(True)
        whole = mac_loss(st, ts, conf, level=level)
        whole.backward()
        out = split[level]
        assert torch.isclose(out["losses"].mean(), whole.detach(), atol=1e-5), level
        assert not torch.isclose(out["losses"][0], out["losses"][1])  # the shards differ; only the mean agrees
        torch.testing.assert_close(out["grad_st"], st.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out["grad_ts"], ts.grad, atol=1e-5, rtol=1e-4)
