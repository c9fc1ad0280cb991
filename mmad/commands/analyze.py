"""``mmad analyze``: per-participant engagement and group comparisons from detected micro-actions.

    mmad analyze --detections DET --participants P.csv --out DIR [--threshold S] [--top-actions N]

Writes engagement.csv, comparisons.csv, comparisons.md, violins.png and problems.txt into DIR.
"""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="per-participant engagement and group comparisons from detections (paper IV-E)",
        description=(
            "Turn detected micro-actions into per-participant engagement measures (engaged, percent time, "
            "bouts) and compare groups with a two-part hurdle analysis: logistic GLM on engagement (odds "
            "ratio) and fractional logit on the time share among engagers (effect ratio). Writes "
            "engagement.csv, comparisons.csv, comparisons.md, violins.png and problems.txt."
        ),
    )
    p.add_argument("--detections", required=True, nargs="+", metavar="PATH",
                   help="detections: MMA-52 challenge CSV, `mmad detect` JSON/CSV, or a folder of them")
    p.add_argument("--participants", required=True, metavar="CSV",
                   help="video_id, participant_id, group[, duration, covariates...]")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--durations", metavar="PATH",
                   help="video durations: CSV video_id,duration or JSON (e.g. MMA-52 mmad.json)")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="a detection counts when its score is at least this (default 0)")
    p.add_argument("--top-actions", type=int, default=10, metavar="N",
                   help="compare the N actions most participants engaged in (default 10)")
    p.add_argument("--groups", metavar="A,B,...",
                   help="group order; effects are reported as first vs second of each pair (default sorted)")
    p.add_argument("--covariates", metavar="COL,...", help="participants columns to adjust for, e.g. age,sex")
    p.add_argument("--p-adjust", default="fdr_bh", choices=("fdr_bh", "fdr_by", "bonferroni", "holm", "none"),
                   help="multiple-comparison adjustment (default fdr_bh = Benjamini-Hochberg)")
    p.add_argument("--adjust-within", default="all", choices=("all", "type", "action", "contrast"),
                   help="adjust over all comparisons or within each type/action/contrast (default all)")
    p.add_argument("--robust", default="HC3", choices=("HC0", "HC1", "HC3"),
                   help="robust standard errors of the fractional logit (default HC3)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the Markdown table")
    p.add_argument("--merge-gap", type=float, default=0.0, metavar="SECONDS",
                   help="detections of one action closer than this form one bout (default 0)")
    p.add_argument("--plot-actions", metavar="NAME_OR_ID,...",
                   help="actions to plot (default: those with a significant difference, else the top two)")
    p.add_argument("--bracket-p", default="p_adj", choices=("p", "p_adj"),
                   help="p-value that draws the significance brackets (default p_adj)")
    p.add_argument("--engagement-only", action="store_true",
                   help="write engagement.csv only (no statsmodels needed)")
    p.set_defaults(func=run)


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def _action_ids(names: list[str]) -> list[int]:
    from mmad.errors import ConfigError
    from mmad.taxonomy import MA52_ACTIONS

    lookup = {n.lower(): i for i, n in enumerate(MA52_ACTIONS)}
    ids = []
    for name in names:
        if name.isdigit() and int(name) < len(MA52_ACTIONS):
            ids.append(int(name))
        elif name.lower() in lookup:
            ids.append(lookup[name.lower()])
        else:
            raise ConfigError(f"--plot-actions: unknown action {name!r} (an MA-52 id 0-51 or name)")
    return ids


def run(args) -> int:
    from mmad.analysis.pipeline import run_analysis
    from mmad.analysis.stats import STATSMODELS_MISSING, require_statsmodels
    from mmad.errors import ConfigError

    if args.top_actions < 1:
        raise ConfigError("--top-actions must be at least 1")
    if not args.engagement_only:
        try:
            require_statsmodels()
        except ImportError:
            print(f"error: {STATSMODELS_MISSING} (or use --engagement-only)", file=sys.stderr)
            return 2
    result = run_analysis(
        args.detections,
        args.participants,
        args.out,
        durations_path=args.durations,
        threshold=args.threshold,
        merge_gap_s=args.merge_gap,
        num_top_actions=args.top_actions,
        groups=_split(args.groups) or None,
        covariates=_split(args.covariates),
        p_adjust=args.p_adjust,
        adjust_within=args.adjust_within,
        intensity_cov_type=args.robust,
        alpha=args.alpha,
        plot_actions=_action_ids(_split(args.plot_actions)) or None,
        bracket_pvalue=args.bracket_p,
        engagement_only=args.engagement_only,
    )
    people = result.engagement["participant_id"].nunique()
    groups = result.engagement.drop_duplicates("participant_id")["group"].value_counts().sort_index()
    print(f"{people} participants ({', '.join(f'{g} {n}' for g, n in groups.items())}); "
          f"{len(result.actions)} actions compared")
    if result.comparisons is not None:
        significant = int((result.comparisons["p"] < args.alpha).sum())
        adjusted = int((result.comparisons["p_adj"] < args.alpha).sum())
        print(f"{len(result.comparisons)} comparisons: {significant} with p < {args.alpha:g}, "
              f"{adjusted} with p_adj < {args.alpha:g}")
        print()
        print(result.files["table"].read_text(encoding="utf-8").split("\n\n", 1)[-1], end="")
    if result.problems:
        print(f"\n{len(result.problems)} problem(s) (also in {result.files['problems']}):")
        for problem in result.problems:
            print(f"  - {problem}")
    print("\nwrote " + ", ".join(str(p) for p in result.files.values()))
    return 0
