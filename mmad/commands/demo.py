"""``mmad demo``: the whole pipeline on MicroPuppet data, ending in a Markdown report.

    mmad demo [--out runs/demo] [--quick] [--seed 0] [--device D]
              [--recognition-config C] [--detection-config C]

Stages, each printed with its elapsed time:

1. ``data``: MicroPuppet recognition clips and detection videos under ``OUT/data`` (the
   ``demo`` presets; ``tiny`` with ``--quick``);
2. ``recognition-train``: Micro-DualNet from ``configs/recognition/micropuppet.yaml`` into
   ``OUT/recognition``;
3. ``recognition-test``: Top-1, Top-5, F1mean, the confusion matrix and the routing weights per
   class and entity on the val split (``OUT/recognition/eval``);
4. ``features``: the trained recognizer as clip encoder over every detection video (``OUT/features``);
5. ``detection-train``: the temporal head from ``configs/detection/micropuppet.yaml`` into
   ``OUT/detection``;
6. ``detection-test``: mAP at tIoU 0.1-0.9, their average and mAP@0.5 on val, per-class AP
   (``OUT/detection/eval``);
7. ``detect``: the ``mmad detect`` pipeline on one validation video (``OUT/detect``);
8. ``report``: ``OUT/report.md`` with its plots in ``OUT/plots`` (:mod:`mmad.report`).

Resuming. Every finished stage leaves ``OUT/stages/<stage>.json`` with a fingerprint of its
settings and inputs (config, data preset, the hash of the checkpoint it reads). A stage whose
marker is complete, whose fingerprint is unchanged and whose outputs exist is skipped. Once a
stage has run, every later one runs too, each cheaply where its own work is done (an extraction
skips videos already encoded by this checkpoint; a training whose ``last.pt`` holds every epoch
stops at once). An interrupted training continues from its ``last.pt``. A stage whose fingerprint
changed (another preset, config or checkpoint) starts again from an empty folder.

The stage code (torch, the models, the data) is imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmad.errors import ConfigError
from mmad.fileio import atomic_write_text

DEFAULT_OUT = "runs/demo"
STAGE_TITLES = {
    "data": "generate MicroPuppet data",
    "recognition-train": "train Micro-DualNet",
    "recognition-test": "test the recognizer on val",
    "features": "extract clip features of the detection videos",
    "detection-train": "train the detection head",
    "detection-test": "test the detector on val",
    "detect": "mmad detect on one validation video",
    "report": "write the report",
}

# Sizes for --quick: tiny data, two epochs, small models (the architecture stays the config's).
QUICK_RECOGNITION = [
    "train.epochs=2", "train.batch_size=4", "model.dim=32", "model.sem.pose_hidden=32",
    "model.transformer.ffn_dim=64", "model.head.hidden_dim=32", "data.num_frames=4",
    "data.image_size=64", "data.resize_short_side=64",
]
QUICK_DETECTION = [
    "train.epochs=2", "train.batch_size=2", "train.eval_every=1", "optim.warmup_epochs=0",
    "model.embed_dim=16", "model.num_levels=3", "model.num_heads=2", "data.max_seq_len=64",
    "encoder.chunk_frames=16",
]

# Config fields shown in the report.
RECOGNITION_KEY_FIELDS = (
    "model.modality", "model.temporal_model", "model.fusion", "model.dim", "model.backbone.arch",
    "model.transformer.num_layers", "model.entity_names", "data.num_frames", "data.frame_stride",
    "data.image_size", "train.epochs", "train.batch_size", "optim.name", "optim.lr", "optim.schedule",
)
DETECTION_KEY_FIELDS = (
    "model.feature_dim", "model.embed_dim", "model.num_levels", "model.window_size", "encoder.stride_frames",
    "data.max_seq_len", "train.epochs", "train.batch_size", "train.ema", "optim.name", "optim.lr",
    "postprocess.nms_sigma", "postprocess.max_segments",
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the whole pipeline on MicroPuppet data, with a report",
        description="Generate MicroPuppet data, train and test Micro-DualNet, extract clip features of the "
                    "detection videos, train and test the detection head, run `mmad detect` on a validation "
                    "video, and write OUT/report.md with its plots. Finished stages are skipped on a second "
                    "run; an interrupted training continues from its last.pt.")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"run folder (default {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true",
                   help="tiny data, two epochs and small models: the pipeline in a few minutes, no accuracy")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of training (default 0)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--recognition-config", metavar="C",
                   help="recognition config (default configs/recognition/micropuppet.yaml)")
    p.add_argument("--detection-config", metavar="C",
                   help="detection config (default configs/detection/micropuppet.yaml)")
    p.set_defaults(func=run_demo_command)


def run_demo_command(args) -> int:
    result = run_demo(args.out, quick=args.quick, seed=args.seed, device=args.device,
                      recognition_config=args.recognition_config, detection_config=args.detection_config,
                      command=["mmad", "demo", *sys.argv[2:]] if sys.argv[1:2] == ["demo"] else None)
    print(result.summary())
    print(f"report: {result.report}")
    return 0


# ----------------------------------------------------------------------------- helpers


def bundled_config(kind: str) -> Path:
    """``configs/<kind>/micropuppet.yaml`` as shipped with the package (a checkout's or the installed copy)."""
    from mmad.config import bundled_config as shipped

    return shipped(f"{kind}/micropuppet.yaml")


def fingerprint(value: Any) -> str:
    """Short SHA-256 of a JSON-serialisable value (keys sorted)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def dotted(tree: dict, key: str) -> Any:
    """``tree["a"]["b"]`` for ``key`` ``"a.b"`` (None when absent)."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def format_seconds(seconds: float) -> str:
    """``75.3`` -> ``"1:15"``; under a minute ``"4.2 s"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def _shown(path: Path) -> Path:
    """``path`` relative to the working folder when it lies inside it (for printed commands)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd())
    except ValueError:
        return Path(path)


def _command(*parts: Any) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts)


@dataclass
class StageOutcome:
    """One stage of a demo run: whether it ran or was skipped, its time and what it recorded."""

    name: str
    title: str
    skipped: bool
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    work_seconds: float = 0.0  # time of the run that did the work (an earlier one when skipped)


@dataclass
class DemoResult:
    """What :func:`run_demo` did: the stages in order, the report path and the headline numbers."""

    out: Path
    report: Path
    stages: list[StageOutcome]
    seconds: float
    metrics: dict[str, float]

    def summary(self) -> str:
        ran = sum(not s.skipped for s in self.stages)
        numbers = "  ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        return (f"demo finished in {format_seconds(self.seconds)} ({ran} of {len(self.stages)} stages ran)"
                + (f"\n{numbers}" if numbers else ""))


# ----------------------------------------------------------------------------- the run


class DemoRun:
    """The stages of one demo run folder; :meth:`run` executes them in order."""

    def __init__(self, out: str | os.PathLike, *, quick: bool = False, seed: int = 0, device: str | None = None,
                 recognition_config: str | os.PathLike | None = None,
                 detection_config: str | os.PathLike | None = None, command: list[str] | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.out = Path(out)
        self.quick = quick
        self.seed = int(seed)
        self.device = device
        self.recognition_config = Path(recognition_config or bundled_config("recognition"))
        self.detection_config = Path(detection_config or bundled_config("detection"))
        self.preset = "tiny" if quick else "demo"
        self.command = command or ["mmad", "demo", "--out", str(out), *(["--quick"] if quick else []),
                                   "--seed", str(seed)]
        self.echo = echo or (lambda line: print(line, flush=True))
        self.stages: list[StageOutcome] = []
        self.commands: dict[str, list[str]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self._upstream = ""
        self.feature_dim: int | None = None
        self._force = False
        self._started = 0.0

    # -- paths ----------------------------------------------------------------------------------
    @property
    def recognition_data(self) -> Path:
        return self.out / "data" / "recognition"

    @property
    def detection_data(self) -> Path:
        return self.out / "data" / "detection"

    @property
    def recognition_run(self) -> Path:
        return self.out / "recognition"

    @property
    def feature_dir(self) -> Path:
        return self.out / "features"

    @property
    def detection_run(self) -> Path:
        return self.out / "detection"

    @property
    def stage_dir(self) -> Path:
        return self.out / "stages"

    # -- configs --------------------------------------------------------------------------------
    def recognition_overrides(self) -> list[str]:
        return [f"data.root={self.recognition_data}", f"out={self.recognition_run}", f"train.seed={self.seed}",
                *(QUICK_RECOGNITION if self.quick else [])]

    def detection_overrides(self, *, feature_dim: int | None = None, encoder_hash: str | None = None) -> list[str]:
        out = [f"data.root={self.detection_data}", f"data.feature_dir={self.feature_dir.resolve()}",
               f"out={self.detection_run}", f"train.seed={self.seed}", *(QUICK_DETECTION if self.quick else [])]
        if feature_dim is not None:
            out.append(f"model.feature_dim={feature_dim}")
        if encoder_hash is not None:
            out.append(f"data.encoder_hash={encoder_hash}")
        return out

    def recognition_cfg(self):
        from mmad.config import load_config
        from recognition.config import RecognitionConfig

        return load_config(RecognitionConfig, self.recognition_config, self.recognition_overrides())

    def detection_cfg(self, **kwargs):
        from detection.config import DetectionConfig
        from mmad.config import load_config

        return load_config(DetectionConfig, self.detection_config, self.detection_overrides(**kwargs))

    def _record_config(self, name: str, path: Path, overrides: list[str], cfg, keys: tuple[str, ...]) -> dict:
        from mmad.config import to_dict

        tree = to_dict(cfg)
        self.configs[name] = {"path": str(_shown(path)), "overrides": list(overrides),
                              "fields": {k: dotted(tree, k) for k in keys}}
        return tree

    # -- stage bookkeeping ----------------------------------------------------------------------
    def _marker(self, name: str) -> Path:
        return self.stage_dir / f"{name}.json"

    def _read_marker(self, name: str) -> dict | None:
        try:
            found = json.loads(self._marker(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def _write_marker(self, name: str, record: dict) -> None:
        atomic_write_text(self._marker(name), json.dumps(record, indent=2, default=str) + "\n")

    def stage(self, name: str, *, settings: dict[str, Any], outputs: list[Path], action: Callable[[], dict],
              clear: list[Path] = ()) -> StageOutcome:
        """Run ``action`` unless the stage is complete with the same fingerprint and its outputs exist.

        ``clear`` lists folders removed before the stage starts over because its fingerprint changed.
        """
        title = STAGE_TITLES[name]
        index = list(STAGE_TITLES).index(name) + 1
        prefix = f"[{index}/{len(STAGE_TITLES)}] {title}"
        key = fingerprint({"settings": settings, "upstream": self._upstream})
        self._upstream = key
        marker = self._read_marker(name)
        started = time.perf_counter()
        if (not self._force and marker is not None and marker.get("status") == "complete"
                and marker.get("fingerprint") == key and all(Path(p).exists() for p in outputs)):
            outcome = StageOutcome(name, title, skipped=True, seconds=0.0, details=marker.get("details", {}),
                                   work_seconds=float(marker.get("seconds", 0.0)))
            self.echo(f"{prefix}: done before, skipped  (total {format_seconds(time.perf_counter() - self._started)})")
            self.stages.append(outcome)
            return outcome
        if marker is not None and marker.get("fingerprint") != key:
            for path in clear:
                if Path(path).is_dir():
                    shutil.rmtree(path)
        self.echo(f"{prefix} ...")
        self._write_marker(name, {"stage": name, "status": "running", "fingerprint": key, "settings": settings})
        details = action() or {}
        seconds = time.perf_counter() - started
        self._write_marker(name, {"stage": name, "status": "complete", "fingerprint": key, "settings": settings,
                                  "seconds": round(seconds, 2), "details": details})
        self._force = True
        self.echo(f"{prefix}: done in {format_seconds(seconds)}  "
                  f"(total {format_seconds(time.perf_counter() - self._started)})")
        outcome = StageOutcome(name, title, skipped=False, seconds=seconds, details=details, work_seconds=seconds)
        self.stages.append(outcome)
        return outcome

    # -- the stages -----------------------------------------------------------------------------
    def run(self) -> DemoResult:
        from detection.features import checkpoint_hash

        self._started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        self.echo(f"mmad demo ({'quick' if self.quick else 'full'}, seed {self.seed}) -> {self.out}")
        with _stage_logging():
            self.stage("data", settings={"preset": self.preset, "seed": self.seed},
                       outputs=[self.recognition_data / "train_list_videos.txt", self.detection_data / "mmad.json"],
                       action=self._generate)

            rcfg = self.recognition_cfg()
            rtree = self._record_config("recognition", self.recognition_config, self.recognition_overrides(), rcfg,
                                        RECOGNITION_KEY_FIELDS)
            last = self.recognition_run / "last.pt"
            self.stage("recognition-train", settings={"config": _without_paths(rtree)}, outputs=[last],
                       action=lambda: self._train_recognizer(rcfg), clear=[self.recognition_run])
            # The best recognizer is tested, encodes the detector's features and runs `detect`, so
            # recognition/best.pt fits detection/best.pt (and last.pt) as a pair.
            best = self.recognition_run / "best.pt"
            last = best if best.is_file() else last
            recognizer_hash = checkpoint_hash(last)
            rec_eval = self.recognition_run / "eval"
            self.stage("recognition-test", settings={"checkpoint": recognizer_hash},
                       outputs=[rec_eval / "metrics_val.json", rec_eval / "confusion_val.csv"],
                       action=lambda: self._test_recognizer(rcfg, last, rec_eval), clear=[rec_eval])

            base = self.detection_cfg()
            features = self.stage("features", settings={"checkpoint": recognizer_hash, "encoder": _plain(base.encoder),
                                                        "preset": self.preset},
                                  outputs=[self.feature_dir], action=lambda: self._extract(base, last),
                                  clear=[self.feature_dir])
            feature_dim = self.feature_dim = int(features.details["feature_dim"])
            dcfg = self.detection_cfg(feature_dim=feature_dim, encoder_hash=recognizer_hash)
            dtree = self._record_config("detection", self.detection_config,
                                        self.detection_overrides(feature_dim=feature_dim, encoder_hash=recognizer_hash),
                                        dcfg, DETECTION_KEY_FIELDS)
            detector = self.detection_run / "last.pt"
            self.stage("detection-train", settings={"config": _without_paths(dtree)}, outputs=[detector],
                       action=lambda: self._train_detector(dcfg), clear=[self.detection_run])
            detector_hash = checkpoint_hash(detector)
            det_eval = self.detection_run / "eval"
            det_test = self.stage("detection-test", settings={"checkpoint": detector_hash},
                                  outputs=[det_eval / "metrics_val.json", det_eval / "per_class_ap_val.csv",
                                           det_eval / "diagnosis_val" / "diagnosis.json"],
                                  action=lambda: self._test_detector(dcfg, detector, det_eval), clear=[det_eval])

            detect_dir = self.out / "detect"
            sample = self._sample_video(dcfg)
            self.stage("detect", settings={"recognizer": recognizer_hash, "detector": detector_hash, "video": sample},
                       outputs=[detect_dir / f"{sample}.csv", detect_dir / f"{sample}_ground_truth.csv"],
                       action=lambda: self._detect(dcfg, sample, last, detector, detect_dir), clear=[detect_dir])

            self._record_commands(last, detector, sample)
            report_path = self.out / "report.md"
            self.stage("report", settings={"stages": [s.name for s in self.stages]},
                       outputs=[report_path], action=lambda: self._report(report_path))
        metrics = {}
        rec = next((s for s in self.stages if s.name == "recognition-test"), None)
        if rec is not None:
            metrics.update({f"val {k}": rec.details.get(k) for k in ("top1", "top5", "f1_mean")})
        metrics.update({f"val {k}": det_test.details.get(k) for k in ("mAP", "mAP@0.5")})
        metrics = {k: float(v) for k, v in metrics.items() if v is not None}
        return DemoResult(out=self.out, report=report_path, stages=self.stages,
                          seconds=time.perf_counter() - self._started, metrics=metrics)

    def _generate(self) -> dict:
        from mmad.synth import generate_detection, generate_recognition

        started = time.perf_counter()
        generate_recognition(self.recognition_data, preset=self.preset, seed=self.seed)
        rec_seconds = time.perf_counter() - started
        self.echo(f"    recognition clips ({self.preset}): {format_seconds(rec_seconds)}")
        generate_detection(self.detection_data, preset=self.preset, seed=self.seed)
        self.echo(f"    detection videos ({self.preset}): {format_seconds(time.perf_counter() - started - rec_seconds)}")
        details = {"preset": self.preset}
        for kind, root in (("recognition", self.recognition_data), ("detection", self.detection_data)):
            manifest = json.loads((root / "micropuppet.json").read_text(encoding="utf-8"))
            details[kind] = {k: manifest.get(k) for k in ("clips", "videos", "instances", "generation_seconds")
                             if k in manifest}
        return details

    def _train_recognizer(self, cfg) -> dict:
        from recognition.task import train

        result = train(cfg, resume=(self.recognition_run / "last.pt").is_file(), device=self.device,
                       allow_config_change=True)  # the stage's fingerprint decides when to start over
        return {"epochs": result.epochs_done, "best_f1_mean": result.best_metric, "best_epoch": result.best_epoch}

    def _test_recognizer(self, cfg, checkpoint: Path, out: Path) -> dict:
        import numpy as np

        from recognition.interpret import routing_by_class
        from recognition.task import class_names_of, test

        report = test(cfg, checkpoint, split="val", out=out, device=self.device)
        if report.metrics is None:
            raise ConfigError(f"{cfg.data.root}: the val split has no labels")
        predictions = report.predictions
        names = class_names_of(cfg)
        if predictions.routing is not None:
            table = routing_by_class(predictions, entity_names=cfg.model.entity_names, class_names=names)
            table.to_csv(out / "routing_by_class_val.csv", index=False, float_format="%.4f")
        used = sorted(set(int(c) for c in predictions.labels[predictions.labels >= 0]))
        np.savetxt(out / "classes_val.txt", np.asarray(used, dtype=np.int64), fmt="%d")
        if report.table:
            self.echo("    " + report.table.replace("\n", "\n    "))
        return {k: report.metrics[k] for k in ("top1", "top5", "f1_mean", "body_top1", "mean_class_accuracy")}

    def _extract(self, cfg, recognizer: Path) -> dict:
        from detection.encoder import extract_features

        report = extract_features(cfg, recognizer, device=self.device, rank=0, world_size=1)
        self.echo(f"    {report.summary()}")
        if report.failed:
            lines = "; ".join(f"{vid}: {why}" for vid, why in report.failed[:3])
            raise ConfigError(f"{len(report.failed)} detection video(s) could not be encoded ({lines})")
        return {"feature_dim": report.feature_dim, "encoder_hash": report.encoder_hash,
                "videos": len(report.encoded) + len(report.already_done), "steps": report.num_steps,
                "seconds": round(report.seconds, 2)}

    def _train_detector(self, cfg) -> dict:
        from detection.task import train_detection

        result = train_detection(cfg, resume=(self.detection_run / "last.pt").is_file(), device=self.device,
                                 allow_config_change=True)  # the stage's fingerprint decides when to start over
        return {"epochs": result.epochs_done, "best_mAP": result.best_metric, "best_epoch": result.best_epoch}

    def _test_detector(self, cfg, checkpoint: Path, out: Path) -> dict:
        from detection.task import predict_subset, write_test_metrics
        from eval.report import format_detection_table

        out.mkdir(parents=True, exist_ok=True)
        predictions, result = predict_subset(cfg, checkpoint, subset="val",
                                             predictions_path=out / "predictions_val.csv", device=self.device)
        if result is None:
            raise ConfigError(f"{cfg.data.annotation_path}: the val subset has no labels")
        write_test_metrics(result, out, subset="val", num_classes=cfg.model.num_classes)
        summary = result.to_dict()
        self.echo("    " + format_detection_table(result).replace("\n", "\n    "))
        from mmad.commands.eval import write_detection_diagnosis
        from mmad.datasets.mma52 import read_detection_annotations, records_to_frame

        truth = records_to_frame(read_detection_annotations(cfg.data.annotation_path, subset="val"))
        write_detection_diagnosis(out / "diagnosis_val", truth, predictions, num_classes=cfg.model.num_classes)
        return {"mAP": summary["average_mAP"], "mAP@0.5": summary["mAP@0.5"],
                "per_threshold": summary["mAP"], "num_predictions": summary["num_predictions"],
                "num_ground_truth": summary["num_ground_truth"]}

    def _sample_video(self, cfg) -> str:
        """The validation video with the most instances (the first such id)."""
        from mmad.datasets.mma52 import read_detection_annotations

        videos = list(read_detection_annotations(cfg.data.annotation_path, subset="val"))
        if not videos:
            raise ConfigError(f"{cfg.data.annotation_path} has no validation videos")
        return min(videos, key=lambda v: (-len(v.segments), v.video_id)).video_id

    def _detect(self, cfg, video_id: str, recognizer: Path, detector: Path, out: Path) -> dict:
        import pandas as pd

        from detection.predict import detect_video, write_detections
        from mmad.datasets.mma52 import read_detection_annotations
        from mmad.taxonomy import label_set

        video = self.detection_data / cfg.encoder.videos_dir / f"{video_id}.mp4"
        keypoints = self.detection_data / cfg.encoder.keypoints_dir / video_id
        result = detect_video(video, recognizer=recognizer, detector=detector, keypoints=keypoints,
                              device=self.device)
        files = write_detections(result, out)
        record = next(v for v in read_detection_annotations(cfg.data.annotation_path, subset="val")
                      if v.video_id == video_id)
        names, _ = label_set(cfg.model.num_classes)
        truth = pd.DataFrame([(video_id, s.t_start, s.t_end, s.label, names[s.label]) for s in record.segments],
                             columns=["video_id", "t_start", "t_end", "label", "class_name"])
        truth.to_csv(out / f"{video_id}_ground_truth.csv", index=False)
        from mmad.viewer import write_viewer_page

        write_viewer_page(out / f"{video_id}.html", video, result.detections, ground_truth=truth, keypoints_dir=keypoints)
        self.echo(f"    {video_id}: {len(result.detections)} detections over {result.duration:.2f} s of video "
                  f"({len(truth)} true instances)")
        return {"video_id": video_id, "duration": result.duration, "detections": len(result.detections),
                "ground_truth": len(truth), "files": {k: str(v) for k, v in files.items()}}

    def _record_commands(self, recognizer: Path, detector: Path, video_id: str) -> None:
        """The ``mmad`` commands that do each stage by hand (what the demo calls in-process)."""
        rec_sets = [a for o in self.recognition_overrides()[2:] for a in ("--set", o)]
        det_over = [o for o in self.detection_overrides(feature_dim=self.feature_dim)
                    if not o.startswith(("data.root=", "data.feature_dir=", "out="))]
        det_sets = [a for o in det_over for a in ("--set", o)]
        det_base = ["--config", _shown(self.detection_config), "--data", self.detection_data, "--set",
                    f"data.feature_dir={self.feature_dir.resolve()}"]
        extract_sets = [a for o in det_over if not o.startswith(("model.", "train.", "optim.", "data.encoder_hash="))
                        for a in ("--set", o)]
        video = self.detection_data / "videos" / f"{video_id}.mp4"
        self.commands = {
            "data": [_command("mmad", "data", "synth", "recognition", "--preset", self.preset, "--seed", self.seed,
                              "--out", self.recognition_data),
                     _command("mmad", "data", "synth", "detection", "--preset", self.preset, "--seed", self.seed,
                              "--out", self.detection_data)],
            "recognition-train": [_command("mmad", "recognition", "train", "--config", _shown(self.recognition_config),
                                           "--data", self.recognition_data, "--out", self.recognition_run,
                                           *rec_sets)],
            "recognition-test": [
                _command("mmad", "recognition", "test", "--config", _shown(self.recognition_config), "--data",
                         self.recognition_data, *rec_sets, "--checkpoint", recognizer, "--split", "val",
                         "--out", self.recognition_run / "eval"),
                _command("mmad", "recognition", "interpret", "--config", _shown(self.recognition_config), "--data",
                         self.recognition_data, *rec_sets, "--checkpoint", recognizer, "--split", "val",
                         "--out", self.recognition_run / "eval")],
            "features": [_command("mmad", "detection", "extract", *det_base, *extract_sets, "--checkpoint",
                                  recognizer)],
            "detection-train": [_command("mmad", "detection", "train", *det_base, "--out", self.detection_run,
                                         *det_sets)],
            "detection-test": [_command("mmad", "detection", "test", *det_base, *det_sets, "--checkpoint", detector,
                                        "--split", "val", "--pred",
                                        self.detection_run / "eval" / "predictions_val.csv", "--diagnose",
                                        self.detection_run / "eval" / "diagnosis_val")],
            "detect": [_command("mmad", "detect", video, "--keypoints", self.detection_data / "keypoints" / video_id,
                                "--recognizer", recognizer, "--detector", detector, "--out", self.out / "detect",
                                "--html")],
        }

    def _manifest(self) -> dict:
        import platform

        import torch

        return {
            "command": _command(*self.command),
            "mode": "quick" if self.quick else "full",
            "seed": self.seed,
            "device": self.device or ("cuda" if torch.cuda.is_available() else "cpu"),
            "environment": {"python": platform.python_version(), "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
            "seconds": round(time.perf_counter() - self._started, 2),
            "stages": [{"name": s.name, "title": s.title, "skipped": s.skipped, "seconds": round(s.seconds, 2),
                        "work_seconds": round(s.work_seconds, 2), "details": s.details,
                        "commands": self.commands.get(s.name, [])} for s in self.stages],
            "configs": self.configs,
            "paths": {
                "recognition_run": "recognition", "recognition_eval": "recognition/eval",
                "detection_run": "detection", "detection_eval": "detection/eval", "detect": "detect",
                "plots": "plots",
            },
        }

    def _write_manifest(self) -> Path:
        return atomic_write_text(self.out / "demo.json", json.dumps(self._manifest(), indent=2, default=str) + "\n")

    def _report(self, path: Path) -> dict:
        from mmad.report import write_demo_report

        self._write_manifest()
        written = write_demo_report(self.out)
        return {"report": str(written), "plots": sorted(p.name for p in (self.out / "plots").glob("*.png"))}


def _without_paths(tree: dict) -> dict:
    """A config tree without the fields that only say where things are (the same run may be named
    by a relative or an absolute ``--out``)."""
    data = {k: v for k, v in tree.get("data", {}).items() if k not in ("root", "feature_dir")}
    return {**{k: v for k, v in tree.items() if k != "out"}, "data": data}


def _plain(obj) -> Any:
    from mmad.config import to_dict

    return to_dict(obj)


class _stage_logging:
    """Show the INFO lines of the stages (training epochs, extraction) on stderr, indented.

    The handler sits on the root logger (so the engine does not add a stream of its own) and only
    passes records of the ``mmad`` loggers.
    """

    def __enter__(self):
        self.handler = logging.StreamHandler(sys.stderr)
        self.handler.setFormatter(logging.Formatter("    %(message)s"))
        self.handler.addFilter(logging.Filter("mmad"))
        self.logger = logging.getLogger("mmad")
        self.level = self.logger.level
        root = logging.getLogger()
        # the command line's own handler (mmad.progress.configure_logging) steps aside; its -q/-v level stays
        self.cli_handlers = [h for h in root.handlers if getattr(h, "_mmad_cli", False)]
        for h in self.cli_handlers:
            root.removeHandler(h)
            self.handler.setLevel(h.level)
        root.addHandler(self.handler)
        if self.logger.level == logging.NOTSET or self.logger.level > logging.INFO:
            self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        root = logging.getLogger()
        root.removeHandler(self.handler)
        for h in self.cli_handlers:
            root.addHandler(h)
        self.logger.setLevel(self.level)
        return False


def run_demo(out: str | os.PathLike = DEFAULT_OUT, *, quick: bool = False, seed: int = 0, device: str | None = None,
             recognition_config: str | os.PathLike | None = None, detection_config: str | os.PathLike | None = None,
             command: list[str] | None = None, echo: Callable[[str], None] | None = None) -> DemoResult:
    """Run (or continue) the demo in ``out``; returns the stages, the report path and the val metrics.

    Args:
        out: the run folder.
        quick: tiny data, two epochs, small models (see :data:`QUICK_RECOGNITION`, :data:`QUICK_DETECTION`).
        seed: seed of the data and of both trainings.
        device: cpu, cuda, ... (default: cuda when available).
        recognition_config / detection_config: the configs (default: the bundled MicroPuppet ones).
        echo: receives the progress lines (default: print).
    """
    return DemoRun(out, quick=quick, seed=seed, device=device, recognition_config=recognition_config,
                   detection_config=detection_config, command=command, echo=echo).run()
