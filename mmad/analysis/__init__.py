"""Behaviour analysis from detected micro-actions: per-participant engagement and group
comparisons (two-part hurdle models), as in the paper's clinical study (section IV-E).

Reading, engagement and simulation need only numpy/pandas; the comparisons need statsmodels
(the optional ``analysis`` extra), imported when they run.
"""

from mmad.analysis.engagement import (
    ENGAGEMENT_COLUMNS,
    engagement_table,
    merge_segments,
    top_actions,
    union_length,
    video_engagement,
)
from mmad.analysis.io import read_detections, read_durations, read_participants
from mmad.analysis.pipeline import AnalysisResult, prepare_inputs, run_analysis
from mmad.analysis.simulate import PlantedEffect, simulate_study
from mmad.analysis.stats import (
    COMPARISON_COLUMNS,
    INTENSITY,
    PROB,
    adjust_pvalues,
    compare_groups,
    comparisons_markdown,
    encode_covariates,
    fit_logit_glm,
)

__all__ = [
    "COMPARISON_COLUMNS",
    "ENGAGEMENT_COLUMNS",
    "INTENSITY",
    "PROB",
    "AnalysisResult",
    "PlantedEffect",
    "adjust_pvalues",
    "compare_groups",
    "comparisons_markdown",
    "encode_covariates",
    "engagement_table",
    "fit_logit_glm",
    "merge_segments",
    "prepare_inputs",
    "read_detections",
    "read_durations",
    "read_participants",
    "run_analysis",
    "simulate_study",
    "top_actions",
    "union_length",
    "video_engagement",
]
