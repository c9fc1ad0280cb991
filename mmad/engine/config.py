"""Config dataclasses of the training engine, embedded in the recognition and detection config trees.

Defaults are the Micro-DualNet paper's recipe (section IV-B): SGD with momentum 0.9, lr 0.01 reached
by 10 linear warm-up epochs from 0.001 and then a cosine decay, weight decay 5e-4, batch 12,
120 epochs. The learning-rate schedule is evaluated per iteration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class OptimConfig:
    """Optimizer, learning-rate schedule and gradient clipping.

    Attributes:
        name: ``"sgd"`` (momentum, optional Nesterov) or ``"adamw"`` (``betas``).
        lr: peak learning rate, reached at the end of warm-up. A parameter group may carry an
            ``lr_scale`` entry (see ``Task.param_groups``) that multiplies every scheduled value.
        momentum / nesterov: SGD only.
        weight_decay: default decay; a parameter group may set its own ``weight_decay``.
        betas / eps: AdamW only.
        warmup_epochs: length of the linear warm-up, in (possibly fractional) epochs; 0 disables it.
        warmup_start_lr: learning rate at the first iteration of warm-up.
        schedule: after warm-up, ``"cosine"`` decays from ``lr`` to ``min_lr`` at the last
            iteration; ``"step"`` multiplies by ``step_gamma`` at each epoch in ``step_milestones``;
            ``"constant"`` keeps ``lr``.
        min_lr: floor of the cosine schedule.
        step_milestones / step_gamma: the step schedule.
        clip_grad_norm: maximum global L2 norm of the gradients; None disables clipping.
    """

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_epochs: float = 10.0
    warmup_start_lr: float = 0.001
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    min_lr: float = 0.0
    step_milestones: tuple[int, ...] = (40, 80)
    step_gamma: float = 0.1
    clip_grad_norm: float | None = 20.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(f"clip_grad_norm must be positive or null, got {self.clip_grad_norm}")


@dataclass
class TrainConfig:
    """The training loop: length, batching, precision, seeding, evaluation and logging.

    Attributes:
        epochs: total number of epochs; the learning-rate schedule spans all of them.
        batch_size: samples per iteration *per process* (under ``torchrun`` the global batch is
            ``batch_size * WORLD_SIZE``).
        eval_batch_size: batch size of the validation loader; None uses ``batch_size``.
        num_workers: DataLoader worker processes per process.
        amp: mixed precision on GPU (ignored on CPU, which always trains in float32).
        amp_dtype: autocast dtype; ``"float16"`` also turns on a gradient scaler.
        seed: seeds Python, NumPy and torch, and the data order (shuffling is a function of
            ``seed`` and the epoch only, so a resumed run iterates the same order).
        deterministic: deterministic algorithms (``torch.use_deterministic_algorithms``, no cuDNN
            benchmark). On CPU this makes an interrupted-and-resumed run bit-identical to an
            uninterrupted one.
        eval_every: validate every this many epochs (and always after the last one).
        log_every: write per-iteration TensorBoard scalars every this many iterations.
        ema: decay of an exponential moving average of the weights (e.g. 0.999); evaluation and
            ``best.pt`` selection then use the averaged weights. None disables it.
        drop_last: drop the last incomplete training batch (kept when the data holds fewer than
            one batch).
        find_unused_parameters / sync_batchnorm: DistributedDataParallel options.
        tensorboard: write TensorBoard event files under ``RUN_DIR/tb``.
        progress_bar: show a tqdm bar (only on rank 0 and only when stderr is a terminal).
        max_nonfinite_steps: iterations whose loss is NaN or infinite that may be skipped (counted in
            ``metrics.jsonl`` as ``train/nonfinite_steps``) before the run stops; 0 stops at the first.
    """

    epochs: int = 120
    batch_size: int = 12
    eval_batch_size: int | None = None
    num_workers: int = 4
    amp: bool = True
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    seed: int = 0
    deterministic: bool = False
    eval_every: int = 1
    log_every: int = 20
    ema: float | None = None
    drop_last: bool = True
    find_unused_parameters: bool = False
    sync_batchnorm: bool = False
    tensorboard: bool = True
    progress_bar: bool = True
    max_nonfinite_steps: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.eval_every < 1 or self.log_every < 1:
            raise ValueError("eval_every and log_every must be >= 1")
        if self.max_nonfinite_steps < 0:
            raise ValueError(f"max_nonfinite_steps must be >= 0, got {self.max_nonfinite_steps}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ValueError(f"ema decay must lie in (0, 1), got {self.ema}")
