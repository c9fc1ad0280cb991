"""Multi-label temporal detection of micro-actions over cached clip features.

Modules: ``timeline`` (seconds <-> feature steps), ``features`` (the per-video feature cache),
``dataset`` (padded feature sequences with their ground truth), ``assign`` (label assignment on
the temporal pyramid), ``model`` (the anchor-free head), ``losses`` (focal and DIoU losses),
``postprocess`` (decoding and soft-NMS), ``config`` (the experiment config), ``task`` (training
with the shared engine).
"""
