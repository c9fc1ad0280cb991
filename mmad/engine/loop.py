"""``fit``: the training loop shared by every stage, and ``evaluate_checkpoint``."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mmad.config import to_dict
from mmad.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_copy,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    read_checkpoint,
    restore_checkpoint,
    restore_rng_state,
)
from mmad.engine.config import OptimConfig, TrainConfig
from mmad.engine.data import (
    batch_size_of,
    build_eval_loader,
    build_train_loader,
    move_to_device,
    set_loader_epoch,
)
from mmad.engine.distributed import (
    DistContext,
    all_gather_objects,
    barrier,
    mean_across_ranks,
    setup_distributed,
    sum_across_ranks,
)
from mmad.engine.ema import ModelEMA
from mmad.engine.logs import (
    MetricsLog,
    ScalarWriter,
    attach_log_handlers,
    detach_log_handlers,
    format_duration,
    log,
)
from mmad.engine.optim import LRSchedule, build_optimizer
from mmad.engine.seeding import seed_everything
from mmad.engine.task import Task
from mmad.errors import ConfigError, DataError
from mmad.fileio import FileLock, atomic_write_text, ensure_folder
from mmad.progress import progress


class NonFiniteLossError(ConfigError, FloatingPointError):
    """The loss became NaN or infinite (more often than ``TrainConfig.max_nonfinite_steps`` allows)."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM or Ctrl-C stopped :func:`fit`, which first wrote a resumable ``last.pt``."""


# Fields a resumed run may change without ``allow_config_change``: the length and the folder.
RESUMABLE_CHANGES = ("train.epochs", "out")


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    ``epochs_done`` counts completed epochs (equal to ``TrainConfig.epochs`` unless stopped early);
    ``best_metric``/``best_epoch`` are None when nothing was validated; ``history`` holds the
    ``metrics.jsonl`` records of this run folder.
    """

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_metric: float | None
    best_epoch: int | None
    epochs_done: int
    global_step: int
    history: list[dict[str, Any]] = field(default_factory=list)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def _plain(tree: Any) -> Any:
    """Tuples to lists, recursively (YAML- and weights_only-friendly)."""
    if isinstance(tree, dict):
        return {str(k): _plain(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_plain(v) for v in tree]
    return tree


def _amp_settings(train_cfg: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    use_amp = train_cfg.amp and device.type == "cuda"
    dtype = torch.bfloat16 if train_cfg.amp_dtype == "bfloat16" else torch.float16
    return use_amp, dtype


def _evaluate(task: Task, model: nn.Module, loader: Any, ctx: DistContext, *, use_amp: bool,
              amp_dtype: torch.dtype) -> dict[str, float]:
    was_training = model.training
    model.eval()
    with torch.no_grad(), torch.autocast(device_type=ctx.device.type, dtype=amp_dtype, enabled=use_amp):
        shown = progress(loader, desc="validation", unit="batch", enabled=ctx.is_main)
        metrics = task.evaluate(model, shown, device=ctx.device, distributed=ctx.distributed)
    model.train(was_training)
    return {k: float(v) for k, v in metrics.items()}


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False, dynamic_ncols=True,
                disable=not (enabled and sys.stderr.isatty()))


def fit(
    task: Task,
    train_cfg: TrainConfig,
    optim_cfg: OptimConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    device: str | torch.device | None = None,
    config_dict: dict[str, Any] | None = None,
    stop_after: int | None = None,
    allow_config_change: bool = False,
) -> FitResult:
    """Train ``task`` for ``train_cfg.epochs`` epochs, writing checkpoints and logs to ``out_dir``.

    Args:
        task: the stage (see :class:`mmad.engine.Task`).
        train_cfg / optim_cfg: the loop and optimizer settings.
        out_dir: the run folder; receives ``last.pt`` (every epoch), ``best.pt`` (highest
            ``task.primary_metric``), ``metrics.jsonl``, ``train.log``, ``config.yaml``, ``tb/`` and
            ``skipped.txt`` (items dropped for a DataError).
        resume: continue from ``out_dir/last.pt`` (model, EMA, optimizer, scaler, epoch, step,
            best metric, RNG states, data order); without that file training starts from scratch.
            Without ``resume``, an existing ``last.pt`` is an error rather than overwritten.
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available. Under ``torchrun`` each
            process takes ``cuda:LOCAL_RANK`` (or the CPU with Gloo).
        config_dict: the full experiment config, stored in checkpoints and ``config.yaml``.
        stop_after: stop once this many epochs are complete, keeping the schedule of
            ``train_cfg.epochs`` (an interruption that ``resume`` continues).
        allow_config_change: let ``resume`` continue although ``config_dict`` differs from the
            checkpoint's (other than ``train.epochs``); without it such a resume is refused with
            the fields that changed.

    Faults: ``out_dir`` is locked (``out_dir/.lock``) while training, so a second process is refused
    with the holder named. A NaN/inf loss stops the run with the epoch and iteration (``last.pt``
    keeps the last good epoch) unless ``train_cfg.max_nonfinite_steps`` allows skipping the step.
    SIGTERM or Ctrl-C finish the current iteration, write a resumable ``last.pt`` (mid-epoch) and
    raise :class:`TrainingInterrupted`; a second signal stops at once.

    Returns:
        A :class:`FitResult` with the best metric, its epoch and the checkpoint paths.
    """
    ctx = setup_distributed(device)
    handlers = []
    determinism = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                   torch.backends.cudnn.benchmark)
    lock = None
    stop = _StopRequest()
    try:
        run_dir = Path(out_dir)
        if ctx.is_main:
            ensure_folder(run_dir)
            lock = FileLock(run_dir / ".lock", purpose="training").acquire()
            handlers = attach_log_handlers(run_dir)
        barrier(ctx)
        stop.install()
        return _fit(task, train_cfg, optim_cfg, run_dir, ctx, resume=resume, config_dict=config_dict,
                    stop_after=stop_after, allow_config_change=allow_config_change, stop=stop)
    finally:
        stop.restore()
        if lock is not None:
            lock.release()
        torch.use_deterministic_algorithms(determinism[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = determinism[1:]
        detach_log_handlers(handlers)


class _StopRequest:
    """SIGTERM / SIGINT handlers that ask the loop to stop after the current iteration."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal_name is not None:  # a second signal: stop now
            self.restore()
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        log.warning("%s received: stopping after this iteration and writing a resumable checkpoint "
                    "(send it again to stop at once)", self.signal_name)

    def requested(self, ctx: DistContext) -> bool:
        """Whether any rank was asked to stop (every rank takes part in the check under torchrun)."""
        asked = self.signal_name is not None
        return sum_across_ranks(float(asked), ctx) > 0 if ctx.distributed else asked


@dataclass
class _Interrupted(Exception):
    """Raised out of an epoch by a stop request: where it stopped and the epoch's loss sums so far."""

    epoch: int
    steps_done: int
    sums: dict[str, float]
    seen: int


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for each field set in both configs with another value (paths excepted)."""
    old_flat, new_flat = _flatten(old or {}), _flatten(new or {})
    return [f"{k}: {old_flat[k]!r} -> {new_flat[k]!r}" for k in sorted(set(old_flat) & set(new_flat))
            if old_flat[k] != new_flat[k] and k not in RESUMABLE_CHANGES]


def _fit(task: Task, train_cfg: TrainConfig, optim_cfg: OptimConfig, run_dir: Path, ctx: DistContext, *,
         resume: bool, config_dict: dict[str, Any] | None, stop_after: int | None, allow_config_change: bool,
         stop: _StopRequest) -> FitResult:
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if not resume and last_path.exists():
        raise ConfigError(f"{run_dir} already holds last.pt: pass --resume to continue that run or choose another --out")
    config = _plain(config_dict if config_dict is not None
                    else {"train": to_dict(train_cfg), "optim": to_dict(optim_cfg)})
    device = ctx.device
    kind = getattr(task, "checkpoint_kind", None)
    # The checkpoint to resume from is read and checked before any data is built.
    ckpt = read_checkpoint(last_path, map_location=device, kind=kind) if resume and last_path.exists() else None
    if ckpt is not None:
        changed = _changed_fields(ckpt.get("config") or {}, config)
        if changed and not allow_config_change:
            raise ConfigError(f"resume: the config differs from {last_path}'s in {len(changed)} field(s): "
                              f"{'; '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}; restore them, "
                              "or pass --allow-config-change to continue with the new values")
        if changed:
            log.warning("resume: continuing with a changed config: %s", "; ".join(changed[:12]))

    # Model, EMA, optimizer, precision. The model is built from the same seed on every rank.
    seed_everything(train_cfg.seed, train_cfg.deterministic)
    model = task.build_model().to(device)
    if train_cfg.sync_batchnorm and ctx.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if ctx.distributed:
        seed_everything(train_cfg.seed + ctx.rank, train_cfg.deterministic)
    ema = ModelEMA(model, train_cfg.ema) if train_cfg.ema is not None else None
    param_groups = getattr(task, "param_groups", None)
    optimizer = build_optimizer(model, optim_cfg, param_groups=param_groups(model) if param_groups else None)
    use_amp, amp_dtype = _amp_settings(train_cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    # Data: shuffled training order from (seed, epoch); an unpadded validation shard per rank.
    skip_log = run_dir / "skipped.txt"
    pin = device.type == "cuda"
    train_loader = build_train_loader(
        task.train_dataset(), task.collate, batch_size=train_cfg.batch_size, num_workers=train_cfg.num_workers,
        seed=train_cfg.seed, rank=ctx.rank, world_size=ctx.world_size, drop_last=train_cfg.drop_last,
        pin_memory=pin, skip_log=skip_log)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ConfigError("the training set is empty")
    val_set = task.val_dataset()
    val_loader = None
    if val_set is not None and len(val_set) > 0:  # type: ignore[arg-type]
        val_loader = build_eval_loader(
            val_set, task.collate, batch_size=train_cfg.eval_batch_size or train_cfg.batch_size,
            num_workers=train_cfg.num_workers, rank=ctx.rank, world_size=ctx.world_size, pin_memory=pin,
            skip_log=skip_log)
    schedule = LRSchedule(optim_cfg, steps_per_epoch=steps_per_epoch, epochs=train_cfg.epochs)

    # Resume: weights, optimizer, scaler, EMA, counters; generator states just before the first epoch.
    start_epoch, best_metric, best_epoch = 0, None, None
    metrics_log = MetricsLog(run_dir / "metrics.jsonl")
    rng_state = None
    skip_steps, partial, nonfinite_steps = 0, None, 0
    if ckpt is not None:
        restore_checkpoint(ckpt, last_path, model, optimizer=optimizer, scaler=scaler, ema=ema)
        start_epoch = int(ckpt["epoch"])
        skip_steps = int(ckpt.get("step_in_epoch") or 0)
        partial = ckpt.get("partial_epoch")
        nonfinite_steps = int(ckpt.get("nonfinite_steps") or 0)
        best_metric, best_epoch = ckpt.get("best_metric"), ckpt.get("best_epoch")
        if ckpt["schedule"]["steps_per_epoch"] != steps_per_epoch:
            log.warning("resume: %d iterations per epoch now, %d in the checkpoint; the schedule shifts",
                        steps_per_epoch, ckpt["schedule"]["steps_per_epoch"])
        per_rank = ckpt.get("rng_per_rank") or []
        rng_state = per_rank[ctx.rank] if len(per_rank) == ctx.world_size else ckpt["rng"]
        if ctx.is_main:
            metrics_log.truncate_after(start_epoch)
        log.info("resumed from %s at epoch %d (step %d)", last_path, start_epoch, int(ckpt["global_step"]))
    elif resume:
        log.warning("resume: %s holds no last.pt, so there is nothing to resume; starting a new run from epoch 1",
                    run_dir)
    if ctx.is_main:
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    train_model: nn.Module = model
    if ctx.distributed:
        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=train_cfg.find_unused_parameters)
    writer = ScalarWriter(run_dir / "tb", enabled=train_cfg.tensorboard and ctx.is_main)
    extra_scalars = getattr(task, "extra_scalars", None)
    if rng_state is not None:
        restore_rng_state(rng_state)

    parts = _RunParts(task=task, model=model, train_model=train_model, optimizer=optimizer, scaler=scaler,
                      schedule=schedule, ema=ema, writer=writer, ctx=ctx, train_cfg=train_cfg, optim_cfg=optim_cfg,
                      use_amp=use_amp, amp_dtype=amp_dtype, stop=stop, run_dir=run_dir,
                      nonfinite_steps=nonfinite_steps)

    def checkpoint_state(epochs_done: int, global_step: int, val_metrics: dict[str, float],
                         rng_all: list[Any]) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": kind,
            "model": model.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else None,
            "ema_updates": ema.updates if ema is not None else 0,
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epochs_done,
            "global_step": global_step,
            "best_metric": best_metric,
            "best_epoch": best_epoch,
            "metric_name": task.primary_metric,
            "val_metrics": val_metrics,
            "rng": rng_all[0],
            "rng_per_rank": rng_all,
            "data_order": {"seed": train_cfg.seed, "epoch": epochs_done, "world_size": ctx.world_size},
            "config": config,
            "nonfinite_steps": parts.nonfinite_steps,
            "step_in_epoch": 0,
            "partial_epoch": None,
        }

    epochs_done = start_epoch
    epoch_times: list[float] = []
    try:
        for epoch in range(start_epoch, train_cfg.epochs):
            if stop_after is not None and epoch >= stop_after:
                break
            t0 = time.perf_counter()
            set_loader_epoch(train_loader, epoch=epoch, seed=train_cfg.seed, rank=ctx.rank, skip_batches=skip_steps)
            try:
                train_means, samples_per_s, lr = _train_one_epoch(parts, train_loader, epoch, first_step=skip_steps,
                                                                  partial=partial)
            except _Interrupted as stopped:
                rng_all = all_gather_objects(capture_rng_state()) if ctx.distributed else [capture_rng_state()]
                if ctx.is_main:
                    state = checkpoint_state(epoch, epoch * steps_per_epoch + stopped.steps_done, {}, rng_all)
                    state.update(step_in_epoch=stopped.steps_done,
                                 partial_epoch={"sums": stopped.sums, "seen": stopped.seen})
                    atomic_save(state, last_path)
                barrier(ctx)
                message = (f"{stop.signal_name}: stopped at epoch {epoch + 1}, iteration {stopped.steps_done} of "
                           f"{steps_per_epoch}; {last_path} holds that point: continue with --resume")
                log.warning("%s", message)
                raise TrainingInterrupted(message) from None
            skip_steps, partial = 0, None
            epochs_done = epoch + 1
            global_step = epochs_done * steps_per_epoch

            val_metrics: dict[str, float] = {}
            if val_loader is not None and (epochs_done % train_cfg.eval_every == 0 or epochs_done == train_cfg.epochs):
                eval_model = ema.module if ema is not None else model
                val_metrics = _evaluate(task, eval_model, val_loader, ctx, use_amp=use_amp, amp_dtype=amp_dtype)
                if task.primary_metric not in val_metrics:
                    raise ConfigError(f"evaluate() returned {sorted(val_metrics)}, without the primary metric "
                                      f"'{task.primary_metric}'")
            with torch.no_grad():
                extras = {k: float(v) for k, v in (extra_scalars(model) if extra_scalars else {}).items()}
            improved = False
            if task.primary_metric in val_metrics:
                value = val_metrics[task.primary_metric]
                improved = math.isfinite(value) and (best_metric is None or value > best_metric)
                if improved:
                    best_metric, best_epoch = value, epochs_done

            # Every rank's generator states go into the checkpoint, so each rank resumes its own.
            rng_all = all_gather_objects(capture_rng_state()) if ctx.distributed else [capture_rng_state()]
            epoch_time = time.perf_counter() - t0
            epoch_times.append(epoch_time)
            if ctx.is_main:
                record: dict[str, Any] = {"epoch": epochs_done, "step": global_step, "lr": lr,
                                          "time_s": round(epoch_time, 3), "samples_per_s": round(samples_per_s, 2)}
                record.update({f"train/{k}": v for k, v in train_means.items()})
                record.update({f"val/{k}": v for k, v in val_metrics.items()})
                record.update({f"extra/{k}": v for k, v in extras.items()})
                if parts.nonfinite_steps:
                    record["train/nonfinite_steps"] = parts.nonfinite_steps
                metrics_log.append(record)
                writer.scalars({k: v for k, v in record.items() if k not in ("epoch", "step", "time_s")},
                               global_step)
                atomic_save(checkpoint_state(epochs_done, global_step, val_metrics, rng_all), last_path)
                if improved:
                    atomic_copy(last_path, best_path)
                remaining = (train_cfg.epochs - epochs_done) * sum(epoch_times) / len(epoch_times)
                losses_text = " ".join(f"{k} {v:.4f}" for k, v in train_means.items())
                val_text = " ".join(f"{k} {v:.4f}" for k, v in val_metrics.items())
                best_text = f" (best {best_metric:.4f} @ {best_epoch})" if val_text and best_metric is not None else ""
                log.info("epoch %d/%d  %s  lr %.3g  %s%s  %.0f samples/s  %s  eta %s", epochs_done,
                         train_cfg.epochs, losses_text, lr, val_text or "no val", best_text,
                         samples_per_s, format_duration(epoch_time), format_duration(remaining))
            barrier(ctx)
            if epochs_done < train_cfg.epochs and stop.requested(ctx):
                message = (f"{stop.signal_name}: stopped after epoch {epochs_done}; {last_path} holds it: "
                           "continue with --resume")
                log.warning("%s", message)
                raise TrainingInterrupted(message)
    finally:
        writer.close()

    return FitResult(
        run_dir=run_dir, last_checkpoint=last_path,
        best_checkpoint=best_path if best_path.is_file() else None,
        best_metric=best_metric, best_epoch=best_epoch, epochs_done=epochs_done,
        global_step=epochs_done * steps_per_epoch, history=metrics_log.read())


@dataclass
class _RunParts:
    """The objects one training epoch works with."""

    task: Task
    model: nn.Module  # unwrapped
    train_model: nn.Module  # DDP wrapper or the model itself
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: LRSchedule
    ema: ModelEMA | None
    writer: ScalarWriter
    ctx: DistContext
    train_cfg: TrainConfig
    optim_cfg: OptimConfig
    use_amp: bool
    amp_dtype: torch.dtype
    stop: _StopRequest
    run_dir: Path
    nonfinite_steps: int = 0


def _nonfinite(p: _RunParts, loss_value: float, epoch: int, i: int, step: int) -> bool:
    """True when this iteration's loss is NaN/inf on any rank and may be skipped; raise when it may not."""
    bad = not math.isfinite(loss_value)
    if p.ctx.distributed:
        bad = sum_across_ranks(float(bad), p.ctx) > 0
    if not bad:
        return False
    p.nonfinite_steps += 1
    where = (f"epoch {epoch + 1}, iteration {i + 1} of {p.schedule.steps_per_epoch} "
             f"(step {step + 1})")
    allowed = p.train_cfg.max_nonfinite_steps
    if p.nonfinite_steps > allowed:
        kept = p.run_dir / "last.pt"
        keeps = f"{kept} keeps the last completed epoch" if kept.is_file() else "no epoch was completed"
        raise NonFiniteLossError(
            f"training stopped: the loss is {loss_value} at {where}; {keeps}. Lower optim.lr, check the data, or "
            f"skip such steps with --set train.max_nonfinite_steps=N ({allowed} allowed now)")
    log.warning("loss is %s at %s: step skipped (%d of %d allowed)", loss_value, where, p.nonfinite_steps, allowed)
    return True


def _train_one_epoch(parts: _RunParts, loader: Any, epoch: int, *, first_step: int = 0,
                     partial: dict[str, Any] | None = None) -> tuple[dict[str, float], float, float]:
    """One pass over ``loader``; returns (mean of each loss term, samples per second, last lr).

    ``first_step`` iterations of the epoch were done before an interruption (the loader skips them);
    ``partial`` holds their loss sums. A stop request raises :class:`_Interrupted` after an iteration.
    """
    p, ctx, device = parts, parts.ctx, parts.ctx.device
    steps_per_epoch = p.schedule.steps_per_epoch
    p.train_model.train()
    sums: dict[str, torch.Tensor] = {k: torch.tensor(float(v)) for k, v in (partial or {}).get("sums", {}).items()}
    seen = int((partial or {}).get("seen", 0))
    lr = p.schedule.lr_at(epoch * steps_per_epoch + first_step)
    t0 = time.perf_counter()
    bar = _progress_bar(steps_per_epoch, f"epoch {epoch + 1}/{p.train_cfg.epochs}",
                        p.train_cfg.progress_bar and ctx.is_main)
    bar.update(first_step)

    def stop_here(i: int) -> bool:  # the last iteration completes the epoch, which then stops the run
        return i + 1 < steps_per_epoch and p.stop.requested(ctx)

    for i, batch in enumerate(loader, start=first_step):
        step = epoch * steps_per_epoch + i
        bar.update(1)
        if batch is None:  # every item of this batch failed to load
            if stop_here(i):
                raise _Interrupted(epoch, i + 1, {k: float(v) for k, v in sums.items()}, seen)
            continue
        lr = p.schedule.apply(p.optimizer, step)
        batch = move_to_device(batch, device, non_blocking=device.type == "cuda")
        with torch.autocast(device_type=device.type, dtype=p.amp_dtype, enabled=p.use_amp):
            losses = p.task.training_step(p.train_model, batch)
        loss = losses["loss"]
        loss_value = float(loss.detach())
        if _nonfinite(p, loss_value, epoch, i, step):
            if stop_here(i):
                raise _Interrupted(epoch, i + 1, {k: float(v) for k, v in sums.items()}, seen)
            continue

        p.optimizer.zero_grad(set_to_none=True)
        p.scaler.scale(loss).backward()
        grad_norm = None
        if p.optim_cfg.clip_grad_norm is not None:
            p.scaler.unscale_(p.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(p.model.parameters(), p.optim_cfg.clip_grad_norm)
        p.scaler.step(p.optimizer)
        p.scaler.update()
        if p.ema is not None:
            p.ema.update(p.model)

        n = batch_size_of(batch)
        seen += n
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + torch.as_tensor(v).detach().float() * n
        if ctx.is_main and (step + 1) % p.train_cfg.log_every == 0:
            scalars = {f"train_iter/{k}": float(v.detach()) for k, v in losses.items()
                       if torch.is_tensor(v) and v.numel() == 1}
            scalars["train_iter/lr"] = lr
            if grad_norm is not None:
                scalars["train_iter/grad_norm"] = float(grad_norm)
            p.writer.scalars(scalars, step + 1)
        elapsed = time.perf_counter() - t0
        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}",
                        samples_s=f"{seen * ctx.world_size / max(elapsed, 1e-9):.1f}", refresh=False)
        if stop_here(i):
            bar.close()
            raise _Interrupted(epoch, i + 1, {k: float(v) for k, v in sums.items()}, seen)
    bar.close()
    if sum_across_ranks(seen, ctx) == 0:
        raise DataError(loader.dataset.skip_log, "no training item could be loaded; the failures are listed here",
                        where=f"epoch {epoch + 1}")
    train_time = time.perf_counter() - t0
    means = mean_across_ranks({k: float(v) / max(seen, 1) for k, v in sums.items()}, ctx)
    return means, seen * ctx.world_size / max(train_time, 1e-9), lr


def evaluate_checkpoint(
    task: Task,
    checkpoint: str | Path,
    *,
    device: str | torch.device | None = None,
    use_ema: bool = True,
    dataset: Any | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    amp: bool = False,
) -> dict[str, float]:
    """Metrics of ``task.evaluate`` for the weights in ``checkpoint`` (EMA weights when present and asked).

    Args:
        task: builds the model and evaluates it.
        checkpoint: a file written by :func:`fit`.
        dataset: the data to evaluate on; default ``task.val_dataset()``.
        batch_size / num_workers: of the evaluation loader.
        amp: bfloat16 autocast on GPU.
    Under ``torchrun`` each rank evaluates its shard and the task gathers (see ``gather_eval_outputs``).
    """
    ctx = setup_distributed(device)
    model = task.build_model().to(ctx.device)
    load_checkpoint(checkpoint, model, use_ema=use_ema, map_location=ctx.device,
                    kind=getattr(task, "checkpoint_kind", None))
    data = dataset if dataset is not None else task.val_dataset()
    if data is None:
        raise ConfigError("no dataset to evaluate: the task has no validation set")
    loader = build_eval_loader(data, task.collate, batch_size=batch_size, num_workers=num_workers,
                               rank=ctx.rank, world_size=ctx.world_size, pin_memory=ctx.device.type == "cuda")
    use_amp = amp and ctx.device.type == "cuda"
    return _evaluate(task, model, loader, ctx, use_amp=use_amp, amp_dtype=torch.bfloat16)
