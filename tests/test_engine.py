"""Tests of the training engine with a toy task (a small MLP on random vectors)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from mmad.engine import (
    LRSchedule,
    ModelEMA,
    OptimConfig,
    TrainConfig,
    atomic_save,
    build_optimizer,
    build_train_loader,
    evaluate_checkpoint,
    fit,
    gather_eval_outputs,
    load_checkpoint,
    move_to_device,
    read_skipped,
)
from mmad.engine import checkpoint as checkpoint_module
from mmad.engine.data import set_loader_epoch
from mmad.errors import ConfigError, DataError

torch.set_num_threads(1)

NUM_FEATURES, NUM_CLASSES = 8, 3


class ToyDataset(Dataset):
    """Fixed random vectors labelled by a fixed linear rule; each read adds noise from the global RNG."""

    def __init__(self, size: int, *, seed: int = 0, noise: float = 0.05, bad_items: frozenset[int] = frozenset()):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, NUM_FEATURES, generator=g)
        rule = torch.randn(NUM_FEATURES, NUM_CLASSES, generator=torch.Generator().manual_seed(123))
        self.y = (self.x @ rule).argmax(1)
        self.noise = noise
        self.bad_items = bad_items

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        if index in self.bad_items:
            raise DataError(f"toy/{index}.mp4", "cannot decode", where="frame 3")
        x = self.x[index] + self.noise * torch.randn(NUM_FEATURES) if self.noise else self.x[index]
        return x, int(self.y[index]), index


class ToyTask:
    """A Task with dropout (so RNG state matters) and accuracy as its primary metric."""

    primary_metric = "accuracy"

    def __init__(self, *, train_size=48, val_size=16, bad_items=frozenset(), crash_at_step=None,
                 scripted_metric=None):
        self.train_set = ToyDataset(train_size, seed=0, bad_items=bad_items)
        self.val_set = ToyDataset(val_size, seed=1, noise=0.0) if val_size else None
        self.crash_at_step = crash_at_step
        self.steps = 0
        self.scripted_metric = list(scripted_metric) if scripted_metric else None
        self.eval_counts: list[int] = []
        self.eval_weight_sums: list[float] = []

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(NUM_FEATURES, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, NUM_CLASSES))

    def train_dataset(self):
        return self.train_set

    def val_dataset(self):
        return self.val_set

    def collate(self, samples):
        x = torch.stack([s[0] for s in samples])
        y = torch.tensor([s[1] for s in samples])
        idx = torch.tensor([s[2] for s in samples])
        return x, y, idx

    def training_step(self, model, batch):
        if self.crash_at_step is not None and self.steps == self.crash_at_step:
            raise RuntimeError("simulated crash")
        self.steps += 1
        x, y, _ = batch
        logits = model(x)
        ce = nn.functional.cross_entropy(logits, y)
        l2 = 1e-3 * sum((p**2).sum() for p in model.parameters())
        return {"loss": ce + l2, "ce": ce, "l2": l2}

    def evaluate(self, model, loader, *, device, distributed):
        preds, labels, indices = [], [], []
        for batch in loader:
            x, y, idx = move_to_device(batch, device)
            preds.append(model(x).argmax(1))
            labels.append(y)
            indices.append(idx)
        out = gather_eval_outputs({"pred": torch.cat(preds), "label": torch.cat(labels)},
                                  indices=torch.cat(indices))
        self.eval_counts.append(len(out["label"]))
        self.eval_weight_sums.append(float(sum(p.double().sum() for p in model.parameters())))
        metrics = {"accuracy": float((out["pred"] == out["label"]).float().mean()), "count": len(out["label"])}
        if self.scripted_metric:
            metrics["accuracy"] = self.scripted_metric.pop(0)
        return metrics


def small_train(**kw) -> TrainConfig:
    base = dict(epochs=4, batch_size=8, num_workers=0, seed=3, deterministic=True, tensorboard=False,
                progress_bar=False, log_every=2)
    base.update(kw)
    return TrainConfig(**base)


def small_optim(**kw) -> OptimConfig:
    base = dict(lr=0.1, warmup_epochs=1, warmup_start_lr=0.01)
    base.update(kw)
    return OptimConfig(**base)


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "last.pt", weights_only=True)


def assert_same_tensors(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"tensors differ at {where}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ---------------------------------------------------------------------------------------------- config


def test_defaults_are_the_papers_recipe():
    o, t = OptimConfig(), TrainConfig()
    assert (o.name, o.lr, o.momentum, o.weight_decay, o.warmup_epochs, o.warmup_start_lr, o.schedule) == (
        "sgd", 0.01, 0.9, 5e-4, 10, 0.001, "cosine")
    assert (t.epochs, t.batch_size) == (120, 12)


def test_configs_load_from_mapping_and_reject_typos():
    from mmad.config import from_dict

    cfg = from_dict(OptimConfig, {"name": "adamw", "betas": [0.9, 0.98], "clip_grad_norm": None})
    assert cfg.betas == (0.9, 0.98) and cfg.clip_grad_norm is None
    with pytest.raises(ConfigError, match="warmup_epochs"):
        from_dict(OptimConfig, {"warmup_epoch": 3})


# ---------------------------------------------------------------------------------------------- schedule


def test_warmup_then_cosine_values_at_known_steps():
    schedule = LRSchedule(OptimConfig(), steps_per_epoch=1, epochs=121)  # W = 10, last step 120
    assert schedule.lr_at(0) == pytest.approx(0.001)
    assert schedule.lr_at(5) == pytest.approx(0.0055)
    assert schedule.lr_at(10) == pytest.approx(0.01)
    assert schedule.lr_at(65) == pytest.approx(0.005)  # half-way through the cosine
    assert schedule.lr_at(120) == pytest.approx(0.0, abs=1e-12)
    lrs = [schedule.lr_at(s) for s in range(121)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_schedule_steps_per_iteration_and_group_scales():
    schedule = LRSchedule(OptimConfig(warmup_epochs=0.5), steps_per_epoch=4, epochs=10)
    assert schedule.warmup_steps == 2
    assert schedule.lr_at(1) == pytest.approx(0.0055)
    model = nn.Linear(2, 2)
    groups = [{"params": [model.weight]}, {"params": [model.bias], "weight_decay": 0.0, "lr_scale": 0.1}]
    opt = build_optimizer(model, OptimConfig(), param_groups=groups)
    schedule.apply(opt, 1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0055)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.00055)
    assert opt.param_groups[1]["weight_decay"] == 0.0 and opt.param_groups[0]["weight_decay"] == 5e-4


def test_step_and_constant_schedules():
    step = LRSchedule(OptimConfig(schedule="step", warmup_epochs=0, step_milestones=(2, 4)), steps_per_epoch=3,
                      epochs=6)
    assert [round(step.lr_at(e * 3), 6) for e in range(6)] == [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001]
    const = LRSchedule(OptimConfig(schedule="constant", warmup_epochs=1), steps_per_epoch=2, epochs=5)
    assert const.lr_at(1) == pytest.approx(0.0055) and const.lr_at(9) == 0.01


# ---------------------------------------------------------------------------------------------- checkpoints


def test_atomic_save_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def failing_save(obj, f):
        real_save(obj, f)
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    """Four deterministic epochs with EMA and validation, never interrupted."""
    run_dir = tmp_path_factory.mktemp("full")
    result = fit(ToyTask(), small_train(ema=0.9), small_optim(), run_dir)
    return run_dir, result


def test_loss_decreases_and_run_folder_is_complete(uninterrupted_run):
    run_dir, result = uninterrupted_run
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["train/loss"] < 0.6 * history[0]["train/loss"]
    assert {"train/ce", "train/l2", "val/accuracy", "val/count", "lr", "time_s", "samples_per_s"} <= set(history[0])
    assert history[-1]["val/accuracy"] > 0.6
    assert result.epochs_done == 4 and result.global_step == 4 * 6
    for name in ("last.pt", "best.pt", "config.yaml", "train.log"):
        assert (run_dir / name).is_file(), name
    assert "epoch 4/4" in (run_dir / "train.log").read_text()


def test_checkpoint_loads_with_weights_only(uninterrupted_run):
    run_dir, _ = uninterrupted_run
    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 4 and ckpt["global_step"] == 24
    assert ckpt["data_order"] == {"seed": 3, "epoch": 4, "world_size": 1}
    assert ckpt["config"]["train"]["ema"] == 0.9
    assert set(ckpt["rng"]) == {"python", "numpy", "torch", "cuda"}
    model = ToyTask().build_model()
    load_checkpoint(run_dir / "last.pt", model)
    assert_same_tensors(model.state_dict(), ckpt["model"])
    load_checkpoint(run_dir / "last.pt", model, use_ema=True)
    assert_same_tensors(model.state_dict(), ckpt["ema"])
    assert not torch.equal(ckpt["ema"]["0.weight"], ckpt["model"]["0.weight"])


def test_resume_is_bit_identical(uninterrupted_run, tmp_path):
    full_dir, _ = uninterrupted_run
    first = fit(ToyTask(), small_train(ema=0.9), small_optim(), tmp_path, stop_after=2)
    assert first.epochs_done == 2 and final_state(tmp_path)["epoch"] == 2
    second = fit(ToyTask(), small_train(ema=0.9), small_optim(), tmp_path, resume=True)
    assert second.epochs_done == 4
    a, b = final_state(full_dir), final_state(tmp_path)
    for key in ("model", "ema", "optimizer", "rng", "best_metric", "best_epoch", "global_step"):
        assert_same_tensors(a[key], b[key], key)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_resume_after_a_crash_mid_epoch_is_bit_identical(uninterrupted_run, tmp_path):
    full_dir, _ = uninterrupted_run
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(ToyTask(crash_at_step=15), small_train(ema=0.9), small_optim(), tmp_path)  # inside epoch 3
    assert final_state(tmp_path)["epoch"] == 2
    with pytest.raises(ConfigError, match="--resume"):
        fit(ToyTask(), small_train(ema=0.9), small_optim(), tmp_path)
    fit(ToyTask(), small_train(ema=0.9), small_optim(), tmp_path, resume=True)
    assert_same_tensors(final_state(full_dir)["model"], final_state(tmp_path)["model"])


def test_best_checkpoint_follows_the_primary_metric(tmp_path):
    task = ToyTask(scripted_metric=[0.1, 0.5, 0.3, 0.4])
    result = fit(task, small_train(), small_optim(), tmp_path)
    assert result.best_epoch == 2 and result.best_metric == 0.5
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == 2 and best["val_metrics"]["accuracy"] == 0.5
    assert final_state(tmp_path)["epoch"] == 4 and final_state(tmp_path)["best_epoch"] == 2


class GroupedToyTask(ToyTask):
    """Adds the optional hooks: no decay and a smaller lr for the last layer, and an extra scalar."""

    def param_groups(self, model):
        head = list(model[3].parameters())
        rest = [p for p in model.parameters() if all(p is not h for h in head)]
        return [{"params": rest}, {"params": head, "weight_decay": 0.0, "lr_scale": 0.5}]

    def extra_scalars(self, model):
        return {"head_norm": float(model[3].weight.norm())}


def test_adamw_param_groups_and_extra_scalars(tmp_path):
    optim = small_optim(name="adamw", lr=0.01, weight_decay=0.05)
    fit(GroupedToyTask(), small_train(epochs=3), optim, tmp_path, stop_after=2)
    result = fit(GroupedToyTask(), small_train(epochs=3), optim, tmp_path, resume=True)
    ckpt = final_state(tmp_path)
    groups = ckpt["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0] and [g["lr_scale"] for g in groups] == [1.0, 0.5]
    assert groups[1]["lr"] == pytest.approx(0.5 * groups[0]["lr"])
    model = GroupedToyTask().build_model()
    load_checkpoint(tmp_path / "last.pt", model)
    assert result.history[-1]["extra/head_norm"] == pytest.approx(float(model[3].weight.detach().norm()))


def test_evaluate_checkpoint_scores_saved_weights(uninterrupted_run):
    run_dir, _ = uninterrupted_run
    task = ToyTask()
    metrics = evaluate_checkpoint(task, run_dir / "last.pt", device="cpu", use_ema=True)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics["accuracy"] == pytest.approx(history[-1]["val/accuracy"])
    assert metrics["count"] == 16


def test_bad_items_are_skipped_and_listed(tmp_path):
    result = fit(ToyTask(bad_items=frozenset({3, 7})), small_train(epochs=2), small_optim(), tmp_path)
    assert result.epochs_done == 2
    skipped = read_skipped(tmp_path)
    assert {i for i, _ in skipped} == {3, 7} and len(skipped) == 4  # each bad item once per epoch
    assert all("toy/" in message and "frame 3" in message for _, message in skipped)


def test_a_run_where_every_item_fails_stops(tmp_path):
    with pytest.raises(DataError, match="skipped.txt: epoch 1: no training item"):
        fit(ToyTask(train_size=8, bad_items=frozenset(range(8))), small_train(epochs=2), small_optim(), tmp_path)
    assert len(read_skipped(tmp_path)) == 8


def test_resume_with_worker_processes_is_bit_identical(tmp_path):
    cfg = small_train(epochs=3, num_workers=2)
    fit(ToyTask(), cfg, small_optim(), tmp_path / "full")
    fit(ToyTask(), cfg, small_optim(), tmp_path / "split", stop_after=1)
    fit(ToyTask(), cfg, small_optim(), tmp_path / "split", resume=True)
    assert_same_tensors(final_state(tmp_path / "full")["model"], final_state(tmp_path / "split")["model"])


def test_fit_restores_global_determinism_settings(tmp_path):
    assert not torch.are_deterministic_algorithms_enabled()
    fit(ToyTask(val_size=0), small_train(epochs=1, deterministic=True), small_optim(), tmp_path)
    assert not torch.are_deterministic_algorithms_enabled()


def test_non_finite_loss_stops_the_run(tmp_path):
    task = ToyTask()
    task.training_step = lambda model, batch: {"loss": model(batch[0]).sum() * float("nan")}
    with pytest.raises(FloatingPointError, match="epoch 1"):
        fit(task, small_train(epochs=1), small_optim(), tmp_path)


def test_tensorboard_scalars_are_written(tmp_path):
    fit(ToyTask(val_size=0), small_train(epochs=1, tensorboard=True), small_optim(), tmp_path)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert not (tmp_path / "best.pt").exists()  # no validation set, no best


# ---------------------------------------------------------------------------------------------- EMA, data


def test_ema_update_math():
    model = nn.BatchNorm1d(2)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(3.0)
    model.num_batches_tracked.fill_(5)
    ema.update(model)  # warm-up: d = min(0.9, 1/10)
    assert torch.allclose(ema.module.weight, torch.full((2,), 0.1 * 1.0 + 0.9 * 3.0))
    ema.update(model)  # d = min(0.9, 2/11)
    d = 2.0 / 11.0
    assert torch.allclose(ema.module.weight, torch.full((2,), d * 2.8 + (1 - d) * 3.0))
    assert int(ema.module.num_batches_tracked) == 5 and ema.updates == 2
    assert not any(p.requires_grad for p in ema.module.parameters())
    ema.updates = 1000  # past the warm-up the configured decay holds
    assert ema.current_decay() == 0.9
    with torch.no_grad():
        ema.module.weight.fill_(1.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((2,), 0.9 * 1.0 + 0.1 * 3.0))


class NoisyIndexDataset(Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, index):
        return torch.tensor([float(index), float(np.random.rand())])


def test_data_order_and_worker_seeds_depend_only_on_seed_and_epoch():
    loader = build_train_loader(NoisyIndexDataset(), torch.stack, batch_size=4, num_workers=2, seed=5)

    def read(epoch):
        set_loader_epoch(loader, epoch=epoch, seed=5)
        return torch.cat(list(loader))

    epoch1 = read(1)
    read(0)
    np.random.seed(99)  # the main process's state must not matter
    assert torch.equal(read(1), epoch1)
    assert not torch.equal(read(2)[:, 0], epoch1[:, 0])
    assert sorted(epoch1[:, 0].tolist()) == [float(i) for i in range(12)]


def test_gather_eval_outputs_sorts_and_drops_repeats():
    out = gather_eval_outputs({"score": torch.tensor([0.3, 0.1, 0.2, 0.3]), "video": ["c", "a", "b", "c"]},
                              indices=[2, 0, 1, 2])
    assert out["index"].tolist() == [0, 1, 2]
    assert out["score"].tolist() == pytest.approx([0.1, 0.2, 0.3]) and out["video"] == ["a", "b", "c"]


# ---------------------------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, run_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    task = ToyTask(train_size=21, val_size=7)
    fit(task, small_train(epochs=2, batch_size=4), small_optim(), run_dir, device="cpu", stop_after=1)
    fit(task, small_train(epochs=2, batch_size=4), small_optim(), run_dir, device="cpu", resume=True)
    metrics = evaluate_checkpoint(task, Path(run_dir) / "last.pt", device="cpu", batch_size=2)
    assert dist.is_initialized()  # the group made by the first call serves the later ones
    info = {"counts": task.eval_counts, "steps": task.steps, "weight_sums": task.eval_weight_sums,
            "accuracy": metrics["accuracy"]}
    torch.save(info, Path(run_dir) / f"rank{rank}.info")


@pytest.mark.slow
def test_ddp_gloo_two_processes(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    info = [torch.load(tmp_path / f"rank{r}.info", weights_only=True) for r in range(2)]
    # every rank sees the whole val set once (2 epochs + evaluate_checkpoint), without padding repeats
    assert [i["counts"] for i in info] == [[7, 7, 7], [7, 7, 7]]
    assert info[0]["steps"] == info[1]["steps"] == 2 * 2  # 11 (padded) items per rank, batch 4, drop_last
    assert info[0]["weight_sums"] == info[1]["weight_sums"]  # replicas stay in sync
    assert info[0]["accuracy"] == info[1]["accuracy"]
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["best.pt", "last.pt"]
    ckpt = final_state(tmp_path)
    assert ckpt["epoch"] == 2 and len(ckpt["rng_per_rank"]) == 2
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


# ---------------------------------------------------------------------------------------------- GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp_dtype", ["float16", "bfloat16"])
def test_mixed_precision_on_gpu(tmp_path, amp_dtype):
    cfg = small_train(epochs=3, amp=True, amp_dtype=amp_dtype, deterministic=False, ema=0.9)
    result = fit(ToyTask(), cfg, small_optim(), tmp_path, device="cuda", stop_after=2)
    ckpt = final_state(tmp_path)
    assert ("scale" in ckpt["scaler"]) == (amp_dtype == "float16")
    assert ckpt["model"]["0.weight"].dtype == torch.float32 and result.epochs_done == 2
    fit(ToyTask(), cfg, small_optim(), tmp_path, device="cuda", resume=True)
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3] and all(np.isfinite(h["train/loss"]) for h in history)
