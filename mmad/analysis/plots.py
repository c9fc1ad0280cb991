"""Violin plots of percent time engaged per group, with significance brackets (the paper's Fig. 3).

matplotlib runs on the Agg backend; nothing is shown on screen.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mmad.analysis.stats import INTENSITY, PROB


def significance_stars(p: float) -> str:
    """``***`` p < .001, ``**`` p < .01, ``*`` p < .05, else an empty string."""
    if not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def violin_plot(
    table: pd.DataFrame,
    comparisons: pd.DataFrame,
    path: str | os.PathLike,
    *,
    actions: Sequence[int],
    groups: Sequence[str] | None = None,
    engagers_only: bool = True,
    bracket_type: str = INTENSITY,
    bracket_pvalue: str = "p_adj",
    seed: int = 0,
) -> None:
    """Write a PNG with one panel per action: percent time engaged per group.

    Each dot is one participant; violins show the distribution, a solid line the group mean and a
    dashed line the median. Brackets mark pairs whose ``bracket_type`` comparison ("Int." or
    "Prob.") has ``bracket_pvalue`` < .05, with stars for .05 / .01 / .001.

    Args:
        table: engagement table (``participant_id, group, action_id, action, engaged, percent_time``).
        comparisons: output of :func:`mmad.analysis.compare_groups` (may be empty).
        path: the PNG to write.
        actions: action ids, one panel each.
        groups: group order on the x axis; default sorted.
        engagers_only: plot only participants with nonzero engagement (the population of "Int.").
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if bracket_type not in (INTENSITY, PROB):
        raise ValueError(f"bracket_type must be {INTENSITY!r} or {PROB!r}")
    groups = list(groups) if groups is not None else sorted(table["group"].unique())
    rng = np.random.default_rng(seed)
    colours = plt.get_cmap("tab10")
    n = max(len(actions), 1)
    fig, axes = plt.subplots(1, n, figsize=(1.6 + 1.5 * len(groups) * n, 4.2), squeeze=False)
    names = dict(zip(table["action_id"], table.get("action", table["action_id"].astype(str))))
    for ax, action_id in zip(axes[0], actions):
        rows = table[table["action_id"] == action_id]
        totals = [int((rows["group"] == g).sum()) for g in groups]
        if engagers_only:
            rows = rows[rows["engaged"] > 0]
        values = [rows.loc[rows["group"] == g, "percent_time"].to_numpy(np.float64) for g in groups]
        top = max((v.max() for v in values if len(v)), default=1.0)
        top = top if top > 0 else 1.0
        for i, v in enumerate(values):
            colour = colours(i % 10)
            if len(v) >= 2 and np.ptp(v) > 0:
                parts = ax.violinplot(v, positions=[i], widths=0.8, showextrema=False)
                for body in parts["bodies"]:
                    body.set_facecolor(colour)
                    body.set_alpha(0.35)
            if len(v):
                ax.scatter(i + rng.uniform(-0.12, 0.12, len(v)), v, s=9, color=colour, alpha=0.8, zorder=3)
                ax.hlines(np.mean(v), i - 0.3, i + 0.3, colors="k", linestyles="solid", linewidth=1.4, zorder=4)
                ax.hlines(np.median(v), i - 0.3, i + 0.3, colors="k", linestyles="dashed", linewidth=1.0,
                          zorder=4)
        brackets = comparisons[
            (comparisons["action_id"] == action_id) & (comparisons["type"] == bracket_type)
        ] if len(comparisons) else comparisons
        level = 0
        for r in brackets.itertuples(index=False):
            stars = significance_stars(getattr(r, bracket_pvalue))
            if not stars or r.group_a not in groups or r.group_b not in groups:
                continue
            i, j = sorted((groups.index(r.group_a), groups.index(r.group_b)))
            y = top * (1.08 + 0.12 * level)
            h = top * 0.03
            ax.plot([i, i, j, j], [y, y + h, y + h, y], color="k", linewidth=1.0)
            ax.text((i + j) / 2, y + h, stars, ha="center", va="bottom")
            level += 1
        ax.set_ylim(bottom=0, top=top * (1.15 + 0.12 * level))
        ax.set_xticks(range(len(groups)))
        if engagers_only:
            ax.set_xticklabels([f"{g}\n{len(v)}/{n} engaged" for g, v, n in zip(groups, values, totals)])
        else:
            ax.set_xticklabels([f"{g}\n(n={len(v)})" for g, v in zip(groups, values)])
        ax.set_title(str(names.get(action_id, action_id)))
        ax.set_ylabel("% time engaged" + (" (engagers)" if engagers_only else ""))
        ax.grid(axis="y", alpha=0.3)
    from matplotlib.lines import Line2D

    axes[0][0].legend(
        [Line2D([], [], color="k", linewidth=1.4), Line2D([], [], color="k", linestyle="dashed", linewidth=1.0)],
        ["mean", "median"], loc="upper left", fontsize=8, frameon=False,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
