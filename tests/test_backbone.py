"""TSM-ResNet: the shift against a loop reference, block placement, streaming and checkpoint loading."""

from __future__ import annotations

import pytest
import torch

from mmad.errors import DataError
from recognition.backbone import (
    TemporalShiftConv2d,
    build_backbone,
    load_pretrained,
    remap_checkpoint_key,
    temporal_shift,
)

torch.set_num_threads(1)


def shift_reference(x: torch.Tensor, num_segments: int, shift_div: int) -> torch.Tensor:
    """Direct per-element definition: zeros where the neighbour frame does not exist."""
    nt, c, h, w = x.shape
    fold = c // shift_div
    out = torch.zeros_like(x)
    for clip in range(nt // num_segments):
        for t in range(num_segments):
            i = clip * num_segments + t
            for ch in range(c):
                if ch < fold:
                    if t + 1 < num_segments:
                        out[i, ch] = x[i + 1, ch]
                elif ch < 2 * fold:
                    if t - 1 >= 0:
                        out[i, ch] = x[i - 1, ch]
                else:
                    out[i, ch] = x[i, ch]
    return out


@pytest.mark.parametrize("num_segments,channels,shift_div", [(4, 16, 8), (3, 10, 4), (1, 8, 8)])
def test_shift_matches_loop_reference(num_segments, channels, shift_div):
    x = torch.randn(2 * num_segments, channels, 3, 2)
    assert torch.equal(temporal_shift(x, num_segments, shift_div=shift_div), shift_reference(x, num_segments, shift_div))


def test_shift_does_not_leak_across_clips():
    x = torch.zeros(2 * 4, 8, 1, 1)
    x[4:] = 1.0  # second clip only
    out = temporal_shift(x, 4, shift_div=8)
    assert out[:4].abs().sum() == 0  # a roll would have pulled the second clip into the first
    assert out[4:8, 0].flatten().tolist() == [1, 1, 1, 0]  # back-shifted channel: zero at the clip end
    assert out[4:8, 1].flatten().tolist() == [0, 1, 1, 1]  # forward-shifted channel: zero at the start


def _shifted_blocks(model):
    return [
        (stage_name, i)
        for stage_name in ("layer1", "layer2", "layer3", "layer4")
        for i, block in enumerate(getattr(model, stage_name))
        if isinstance(block.conv1, TemporalShiftConv2d)
    ]


def test_resnet101_shifts_every_other_block_and_resnet50_every_block():
    r101 = build_backbone("resnet101")
    shifted = _shifted_blocks(r101)
    assert ("layer3", 0) in shifted and ("layer3", 1) not in shifted and ("layer3", 22) in shifted
    assert len(shifted) == 2 + 2 + 12 + 2
    r50 = build_backbone("resnet50")
    assert len(_shifted_blocks(r50)) == 3 + 4 + 6 + 3
    assert r50.out_channels == 2048 and build_backbone("resnet18").out_channels == 512


def test_features_shape_and_temporal_mixing():
    model = build_backbone("resnet18").eval()
    frames = torch.rand(1, 4, 3, 64, 64)
    feats = model(frames)
    assert feats.shape == (1, 4, 512, 2, 2)
    changed = frames.clone()
    changed[0, 3] = torch.rand(3, 64, 64)
    with torch.no_grad():
        diff = (model(changed) - model(frames)).abs().amax(dim=(2, 3, 4))[0]
    assert diff[0] > 0  # frame 0 sees frame 3 through the stacked shifts
    no_shift = build_backbone("resnet18", temporal_shift=False).eval()
    with torch.no_grad():
        diff = (no_shift(changed) - no_shift(frames)).abs().amax(dim=(2, 3, 4))[0]
    assert diff[:3].max() == 0


def test_stream_in_chunks_equals_whole_sequence():
    model = build_backbone("resnet18").eval()
    frames = torch.rand(21, 3, 32, 32)
    with torch.no_grad():
        whole = model(frames[None])[0]
    streamed = model.forward_stream(frames, chunk_size=5)
    assert torch.allclose(streamed, whole, atol=1e-5)


def test_load_pretrained_remaps_tsm_and_torchvision_keys(tmp_path):
    source = build_backbone("resnet18")
    state = source.state_dict()
    tsm_state = {}
    for key, value in state.items():
        name = key.replace("conv1.weight", "conv1.net.weight") if ".conv1." in key else key
        tsm_state["module.base_model." + name] = value
    tsm_state["module.new_fc.weight"] = torch.zeros(400, 512)
    tsm_state["module.base_model.extra.weight"] = torch.zeros(1)
    path = tmp_path / "tsm.pth"
    torch.save({"state_dict": tsm_state}, path)
    target = build_backbone("resnet18")
    report = load_pretrained(target, str(path))
    assert report.unexpected == ["module.base_model.extra.weight"]
    assert report.missing == [] and report.mismatched == []
    for key, value in target.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert remap_checkpoint_key("layer2.1.conv1.weight") == "layer2.1.conv1.weight"
    assert remap_checkpoint_key("fc.bias") is None


def test_load_pretrained_reports_missing_and_mismatched(tmp_path):
    state = {"conv1.weight": torch.zeros(64, 3, 5, 5), "bn1.weight": torch.ones(64)}
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    report = load_pretrained(build_backbone("resnet18"), str(path))
    assert report.loaded == ["bn1.weight"]
    assert report.mismatched and report.mismatched[0].startswith("conv1.weight")
    assert "layer4.1.bn2.weight" in report.missing


def test_load_pretrained_rejects_unusable_files(tmp_path):
    model = build_backbone("resnet18")
    with pytest.raises(DataError, match="not found"):
        load_pretrained(model, str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="a text file, not a checkpoint"):
        load_pretrained(model, str(junk))
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, other)
    with pytest.raises(DataError, match="no tensor matches"):
        load_pretrained(model, str(other))


def _mmaction2_name(key: str, shifted: bool) -> str:
    """This backbone's key written the way mmaction2's ResNetTSM names it (ConvModule wrappers)."""
    parts = key.split(".")
    if parts[0] == "conv1":
        return "backbone.conv1.conv." + ".".join(parts[1:])
    if parts[0] == "bn1":
        return "backbone.conv1.bn." + ".".join(parts[1:])
    stage, block, module, tail = parts[0], parts[1], parts[2], ".".join(parts[3:])
    if module == "downsample":
        wrapper = "conv" if parts[3] == "0" else "bn"
        return f"backbone.{stage}.{block}.downsample.{wrapper}.{'.'.join(parts[4:])}"
    if module.startswith("conv"):
        net = ".net" if (shifted and module == "conv1") else ""
        return f"backbone.{stage}.{block}.{module}.conv{net}.{tail}"
    assert module.startswith("bn"), key
    return f"backbone.{stage}.{block}.conv{module[2:]}.bn.{tail}"


@pytest.mark.parametrize("arch", ["resnet50", "resnet101"])
def test_load_pretrained_places_every_mmaction2_tsm_weight(tmp_path, arch):
    source = build_backbone(arch)
    with torch.no_grad():
        for value in source.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.randn_like(value))
    state = {_mmaction2_name(k, shifted=True): v for k, v in source.state_dict().items()}
    assert "backbone.layer1.0.conv1.conv.net.weight" in state
    assert "backbone.layer1.0.downsample.conv.weight" in state
    state["cls_head.fc_cls.weight"] = torch.zeros(174, 2048)
    path = tmp_path / "mmaction2_tsm.pth"
    torch.save({"meta": {"mmaction_version": "1.x"}, "state_dict": state}, path)
    target = build_backbone(arch)
    report = load_pretrained(target, str(path))
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key


def test_load_pretrained_places_every_torchvision_imagenet_weight(tmp_path):
    from torchvision import models

    net = models.resnet50(weights=None)
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(net.state_dict(), path)  # torchvision's own file layout: a bare state dict with fc.*
    target = build_backbone("resnet50")
    report = load_pretrained(target, str(path))
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    for key, value in target.state_dict().items():
        assert torch.equal(value, net.state_dict()[key]), key


def test_unmatched_checkpoint_names_keys_it_could_not_place(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(3), "cls_token": torch.zeros(1)}, path)
    with pytest.raises(DataError, match="could not place: blocks.0.attn.qkv.weight"):
        load_pretrained(build_backbone("resnet18"), str(path))
