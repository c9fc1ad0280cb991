"""The whole ``mmad analyze`` run: read inputs, check them, measure engagement, compare groups,
write the tables, the plot and the list of problems.

Output folder:

- ``engagement.csv``: per participant and action (tidy; see :mod:`mmad.analysis.engagement`);
- ``comparisons.csv``: every hurdle comparison of the top actions (see :mod:`mmad.analysis.stats`);
- ``comparisons.md``: the Table V-like Markdown table (rows with p < alpha);
- ``violins.png``: percent time engaged per group with significance brackets;
- ``problems.txt``: what was skipped and why (one line each; empty when nothing was).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mmad.analysis.engagement import engagement_table, top_actions
from mmad.analysis.io import read_detections, read_durations, read_participants
from mmad.errors import DataError
from mmad.taxonomy import MA52_ACTIONS


@dataclass
class AnalysisResult:
    """What :func:`run_analysis` produced."""

    engagement: pd.DataFrame
    comparisons: pd.DataFrame | None
    actions: list[int]
    problems: list[str]
    files: dict[str, Path] = field(default_factory=dict)


def prepare_inputs(
    detections: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    durations: dict[str, float] | None = None,
    metadata_durations: dict[str, float] | None = None,
    participants_path: str | os.PathLike | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Attach durations and drop what cannot be analysed, reporting each drop.

    Durations come from the participants' ``duration`` column, then ``durations``, then
    ``metadata_durations`` (from the detection files), in that order.

    Returns:
        ``(detections, participants, problems)``: detections of known videos only, clipped to
        ``[0, duration]``; participants with a positive ``duration`` for every kept video.
    """
    problems: list[str] = []
    participants = participants.copy()
    listed = set(participants["video_id"])
    if "duration" in participants.columns:
        column = participants["duration"]
    else:
        column = pd.Series(np.nan, index=participants.index)
    fallback = {**(metadata_durations or {}), **(durations or {})}
    filled = column.astype(float).copy()
    missing = filled.isna()
    filled[missing] = participants.loc[missing, "video_id"].map(fallback).astype(float)
    participants["duration"] = filled
    bad = ~(participants["duration"] > 0)
    if bad.any():
        vids = list(participants.loc[bad, "video_id"])
        shown = ", ".join(vids[:5]) + ("" if len(vids) <= 5 else f" and {len(vids) - 5} more")
        problems.append(f"videos {shown}: no positive duration (participants 'duration' column, --durations or "
                        "the detection metadata); left out")
        participants = participants[~bad]
    if participants.empty:
        raise DataError(participants_path, "no video with a known duration; nothing to analyse")

    unlisted = ~detections["video_id"].isin(listed)
    if unlisted.any():
        unknown = sorted(detections.loc[unlisted, "video_id"].unique())
        shown = ", ".join(unknown[:5]) + ("" if len(unknown) <= 5 else f" and {len(unknown) - 5} more")
        problems.append(f"{len(unknown)} video(s) with detections are missing from the participants table "
                        f"({shown}); their detections are ignored")
    detections = detections[detections["video_id"].isin(set(participants["video_id"]))].copy()
    limit = detections["video_id"].map(dict(zip(participants["video_id"], participants["duration"])))
    past = detections["t_end"] > limit + 1e-6
    if past.any():
        vids = sorted(detections.loc[past, "video_id"].unique())
        problems.append(f"{int(past.sum())} detection(s) in {len(vids)} video(s) end after the video's duration "
                        f"(e.g. {vids[0]}); clipped")
    detections["t_start"] = np.minimum(detections["t_start"], limit)
    detections["t_end"] = np.minimum(detections["t_end"], limit)
    no_det = ~participants["video_id"].isin(set(detections["video_id"]))
    if no_det.any():
        problems.append(f"{int(no_det.sum())} video(s) have no detections at all; counted as no engagement")
    return detections.reset_index(drop=True), participants.reset_index(drop=True), problems


def participant_covariates(
    participants: pd.DataFrame, columns: Sequence[str], *, path: str | os.PathLike | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """One row of raw covariate values per participant (their first video's row).

    Raises DataError for a column the table lacks; a participant whose videos disagree is reported.
    """
    problems = []
    missing = [c for c in columns if c not in participants.columns]
    if missing:
        raise DataError(path, f"no covariate column(s) {', '.join(missing)}; columns are "
                        f"{', '.join(participants.columns)}")
    grouped = participants.groupby("participant_id", sort=True)
    for name in columns:
        varies = grouped[name].nunique(dropna=False) > 1
        if varies.any():
            problems.append(f"covariate {name!r} differs between the videos of participant(s) "
                            f"{', '.join(varies.index[varies][:5])}; the first video's value is used")
    groups_vary = grouped["group"].nunique() > 1
    if groups_vary.any():
        problems.append(f"participant(s) {', '.join(groups_vary.index[groups_vary][:5])} appear in several groups; "
                        "the first video's group is used")
    return grouped[list(columns)].first(), problems


def run_analysis(
    detections_paths: str | os.PathLike | Sequence[str | os.PathLike],
    participants_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    durations_path: str | os.PathLike | None = None,
    threshold: float = 0.0,
    merge_gap_s: float = 0.0,
    num_top_actions: int = 10,
    groups: Sequence[str] | None = None,
    covariates: Sequence[str] = (),
    p_adjust: str = "fdr_bh",
    adjust_within: str = "all",
    intensity_cov_type: str = "HC3",
    alpha: float = 0.05,
    plot_actions: Sequence[int] | None = None,
    bracket_pvalue: str = "p_adj",
    engagement_only: bool = False,
    action_names: Sequence[str] = MA52_ACTIONS,
) -> AnalysisResult:
    """Run the analysis end to end and write its files into ``out_dir``.

    Args:
        detections_paths: detection files or folders (see :func:`mmad.analysis.read_detections`).
        participants_path: CSV ``video_id, participant_id, group[, duration, covariates...]``.
        out_dir: output folder (created).
        durations_path: optional CSV/JSON of video durations (see :func:`read_durations`).
        threshold: detections with score >= threshold count.
        merge_gap_s: detections closer than this join one bout.
        num_top_actions: compare the N actions most participants engaged in.
        groups: group order (effects are first vs second of each pair); default sorted.
        covariates: participants-table columns to adjust for.
        p_adjust, adjust_within, intensity_cov_type: see :func:`mmad.analysis.compare_groups`.
        alpha: significance level of the Markdown table.
        plot_actions: action ids to plot; default the actions with a significant comparison
            (up to 4), else the two most frequent.
        bracket_pvalue: "p" or "p_adj": which p-value draws the brackets.
        engagement_only: stop after ``engagement.csv`` (no statsmodels needed).

    Returns:
        :class:`AnalysisResult`. ``problems`` are also written to ``problems.txt``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    detections, metadata_durations = read_detections(detections_paths, action_names=action_names)
    participants = read_participants(participants_path)
    durations = read_durations(durations_path) if durations_path is not None else None
    detections, participants, problems = prepare_inputs(
        detections, participants, durations=durations, metadata_durations=metadata_durations,
        participants_path=participants_path,
    )
    raw_covariates, cov_problems = participant_covariates(participants, covariates, path=participants_path)
    problems += cov_problems

    table = engagement_table(
        detections, participants, threshold=threshold, merge_gap_s=merge_gap_s, action_names=action_names,
        body_groups=len(action_names) == len(MA52_ACTIONS),
    )
    files = {"engagement": out / "engagement.csv"}
    table.to_csv(files["engagement"], index=False, float_format="%.6g")
    actions = top_actions(table, num_top_actions)
    if len(actions) < num_top_actions:
        nobody = len(action_names) - len(actions)
        problems.append(f"only {len(actions)} action(s) have any engagement ({nobody} nobody engaged in); "
                        f"comparing {len(actions)} instead of {num_top_actions}")

    comparisons = None
    if not engagement_only:
        from mmad.analysis.plots import violin_plot
        from mmad.analysis.stats import compare_groups, comparisons_markdown, encode_covariates

        encoded = None
        if covariates:
            encoded, enc_problems = encode_covariates(raw_covariates, covariates)
            problems += enc_problems
        comparisons, stat_problems = compare_groups(
            table, actions=actions, groups=groups, covariates=encoded, p_adjust=p_adjust,
            adjust_within=adjust_within, intensity_cov_type=intensity_cov_type,
        )
        problems += stat_problems
        files["comparisons"] = out / "comparisons.csv"
        comparisons.to_csv(files["comparisons"], index=False, float_format="%.6g")
        files["table"] = out / "comparisons.md"
        files["table"].write_text(_markdown_report(comparisons, actions, alpha, p_adjust, adjust_within, threshold,
                                                   covariates, comparisons_markdown), encoding="utf-8")
        if plot_actions is None:
            significant = comparisons[comparisons[bracket_pvalue] < alpha] if len(comparisons) else comparisons
            plot_actions = list(dict.fromkeys(int(a) for a in significant["action_id"]))[:4] or actions[:2]
        if plot_actions:
            files["plot"] = out / "violins.png"
            order = list(groups) if groups is not None else None
            violin_plot(table, comparisons, files["plot"], actions=plot_actions, groups=order,
                        bracket_pvalue=bracket_pvalue)
        else:
            problems.append("no action to plot")
    files["problems"] = out / "problems.txt"
    files["problems"].write_text("".join(f"{p}\n" for p in problems), encoding="utf-8")
    return AnalysisResult(engagement=table, comparisons=comparisons, actions=actions, problems=problems, files=files)


def _markdown_report(comparisons, actions, alpha, p_adjust, adjust_within, threshold, covariates, to_markdown) -> str:
    names = dict(zip(comparisons["action_id"], comparisons["action"])) if len(comparisons) else {}
    adjust = "none" if p_adjust == "none" else f"{p_adjust} within {adjust_within}"
    head = (
        f"Pairwise group differences (p < {alpha:g}) in micro-action engagement. "
        "Prob.: engagement probability (logistic GLM, odds ratio); "
        "Int.: fraction of time engaged among engagers (fractional logit, robust SE, effect ratio). "
        f"Effects are first group vs second. p_adj: {adjust}. Score threshold {threshold:g}"
        + (f"; covariates: {', '.join(covariates)}" if covariates else "")
        + f". Actions compared: {', '.join(str(names.get(a, a)) for a in actions)}.\n\n"
    )
    return head + to_markdown(comparisons, alpha=alpha)
