"""The one training loop of the toolkit: optimizer, schedule, AMP, DDP, EMA, checkpoints, logging.

A stage (recognition, detection) describes *what* to train as a :class:`Task`; :func:`fit` does
the rest. The engine imports neither stage.

The Task protocol
-----------------
::

    class Task(Protocol):
        primary_metric: str                     # key of evaluate()'s dict; best.pt keeps its maximum
        def build_model(self) -> nn.Module      # fresh model on CPU; the engine moves and wraps it
        def train_dataset(self) -> Dataset      # map-style
        def val_dataset(self) -> Dataset | None # None: train without validation (no best.pt)
        def collate(self, samples: list) -> batch
        def training_step(self, model, batch) -> dict[str, Tensor]
        def evaluate(self, model, loader, *, device, distributed) -> dict[str, float]
        # optional:
        def param_groups(self, model) -> list[dict] | None
        def extra_scalars(self, model) -> dict[str, float]

- ``collate`` returns a ClipBatch (anything with ``.to(device)``), a tensor, or a tuple/list/dict
  of them; the engine moves it to the device. Items the dataset could not load never reach it.
- ``training_step(model, batch)`` runs the forward pass and returns the losses: ``"loss"`` is
  minimised, every other scalar term (e.g. ``"ce"``, ``"mac"``) is averaged per epoch and logged.
  ``model`` may be a DistributedDataParallel wrapper: call it, do not reach into its attributes
  (use ``mmad.engine.unwrap_model(model)`` for that). It runs under autocast on GPU.
- ``evaluate(model, loader, *, device, distributed)`` runs under ``torch.no_grad()`` with the model
  in eval mode (the EMA copy when ``TrainConfig.ema`` is set). ``loader`` yields collated batches
  (not yet moved: call ``mmad.engine.move_to_device``) of this process's shard of the validation
  set; under ``torchrun`` shards do not overlap and together cover the set once. Collect
  per-sample outputs and call ``gather_eval_outputs({...}, indices=...)`` so every rank computes
  the metrics on the whole set; outside ``torchrun`` it only moves tensors to CPU.
  Return plain floats; ``primary_metric`` must be among them (higher is better).
- ``param_groups(model)``: e.g. ``[{"params": decay}, {"params": no_decay, "weight_decay": 0.0},
  {"params": backbone, "lr_scale": 0.1}]``; ``lr_scale`` multiplies the scheduled learning rate.
- ``extra_scalars(model)``: numbers logged once per epoch under ``extra/`` (e.g. the mean routing
  weight per entity).

Running
-------
``fit(task, train_cfg, optim_cfg, out_dir, *, resume=False, device=None, config_dict=None,
stop_after=None)`` writes into ``out_dir``: ``last.pt`` every epoch and ``best.pt`` (both written atomically),
``metrics.jsonl`` (one line per epoch), ``train.log``, ``config.yaml``, TensorBoard files in
``tb/``, and ``skipped.txt``. ``resume=True`` continues from ``last.pt``; on CPU with
``TrainConfig.deterministic`` the result is bit-identical to a run that was never interrupted.
Checkpoints load with ``torch.load(..., weights_only=True)``; use :func:`load_checkpoint` to put
them into a model, or :func:`evaluate_checkpoint` to score one.

Under ``torchrun --nproc_per_node N`` the same call trains on N processes (NCCL on GPU, Gloo on
CPU): DistributedDataParallel, a DistributedSampler per epoch, rank 0 logs and writes files.
``TrainConfig.batch_size`` is per process. The process group is created on the first call and
kept for later ones in the same process (e.g. ``evaluate_checkpoint`` after ``fit``).

Faults: every checkpoint is read by :func:`read_checkpoint`, which refuses a file that is not a
fitting checkpoint with a one-line :class:`mmad.errors.DataError`; checkpoints carry a ``kind`` (the
task's ``checkpoint_kind``: ``"recognition"`` or ``"detection"``). The run folder is locked while
training (``RUN_DIR/.lock``). A NaN/inf loss stops the run naming the epoch and iteration
(``TrainConfig.max_nonfinite_steps`` lets it skip such steps); SIGTERM and Ctrl-C write a resumable
mid-epoch ``last.pt`` first; resuming with a changed config is refused unless ``allow_config_change``.

Bad items: when the dataset raises :class:`mmad.errors.DataError` for an item, the item is
dropped from its batch, its index and the error message are appended to ``skipped.txt`` and
training goes on; any other exception stops the run.
"""

from mmad.engine.checkpoint import (
    atomic_copy,
    atomic_save,
    capture_rng_state,
    checkpoint_kind,
    load_checkpoint,
    read_checkpoint,
    restore_checkpoint,
    restore_rng_state,
    unwrap_model,
)
from mmad.engine.config import OptimConfig, TrainConfig
from mmad.engine.data import (
    SkipBadCollate,
    SkipBadItems,
    batch_size_of,
    build_eval_loader,
    build_train_loader,
    move_to_device,
    read_skipped,
)
from mmad.engine.distributed import DistContext, ShardSampler, gather_eval_outputs, setup_distributed
from mmad.engine.ema import ModelEMA
from mmad.engine.loop import FitResult, NonFiniteLossError, TrainingInterrupted, evaluate_checkpoint, fit
from mmad.engine.optim import LRSchedule, build_optimizer
from mmad.engine.seeding import seed_everything
from mmad.engine.task import Task

__all__ = [
    "DistContext",
    "FitResult",
    "LRSchedule",
    "ModelEMA",
    "NonFiniteLossError",
    "OptimConfig",
    "ShardSampler",
    "SkipBadCollate",
    "SkipBadItems",
    "Task",
    "TrainConfig",
    "TrainingInterrupted",
    "atomic_copy",
    "atomic_save",
    "batch_size_of",
    "build_eval_loader",
    "build_optimizer",
    "build_train_loader",
    "capture_rng_state",
    "checkpoint_kind",
    "evaluate_checkpoint",
    "fit",
    "gather_eval_outputs",
    "load_checkpoint",
    "move_to_device",
    "read_checkpoint",
    "read_skipped",
    "restore_checkpoint",
    "restore_rng_state",
    "seed_everything",
    "setup_distributed",
    "unwrap_model",
]
