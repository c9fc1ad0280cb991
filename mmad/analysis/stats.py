"""Pairwise group comparisons of micro-action engagement: a two-part (hurdle) analysis.

For each action and each pair of groups ``(A, B)`` (A before B in the group order):

(a) **Prob.** - probability of engagement: logistic GLM of ``engaged`` (0/1) on an indicator of
    group A (+ covariates) over the participants of A and B; the effect is the odds ratio of A
    relative to B, ``exp(coef)``, with model-based standard errors by default;
(b) **Int.** - intensity among engagers: fractional logit (binomial-family GLM, logit link) of the
    proportion of time engaged on the same design, over the participants of A and B who engaged;
    the effect is the ratio ``exp(coef)`` (of the odds of being engaged at a given moment), with
    heteroskedasticity-robust sandwich standard errors (HC3 by default: scores scaled by
    1 / (1 - leverage), which keeps the false-positive rate near nominal with few engagers).

Wald z-tests give the p-values; they are adjusted for multiple comparisons (Benjamini-Hochberg by
default) over the whole table or within families. Comparisons that cannot be estimated (nobody
engaged, no variance, perfect separation, too few engagers) are skipped and reported as problems.

statsmodels is imported inside the functions that need it (the optional ``analysis`` extra).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mmad.errors import ConfigError

PROB = "Prob."
INTENSITY = "Int."

COMPARISON_COLUMNS = (
    "action_id",
    "action",
    "contrast",
    "type",
    "effect",
    "ci_low",
    "ci_high",
    "z",
    "p",
    "p_adj",
    "group_a",
    "group_b",
    "n_a",
    "n_b",
    "engaged_a",
    "engaged_b",
    "summary_a",
    "summary_b",
)

P_ADJUST_METHODS = ("fdr_bh", "fdr_by", "bonferroni", "holm", "none")
ADJUST_WITHIN = ("all", "type", "action", "contrast")
ROBUST_COV_TYPES = ("HC0", "HC1", "HC3")

STATSMODELS_MISSING = (
    "statsmodels is needed for the group comparisons; install the extra: pip install 'mmad[analysis]'"
)


def require_statsmodels():
    """Import statsmodels.api, raising ``ImportError`` with an install hint when it is missing."""
    try:
        import statsmodels.api as sm
    except ImportError as e:
        raise ImportError(STATSMODELS_MISSING) from e
    return sm


class EstimationProblem(Exception):
    """A comparison that cannot be estimated; the message says why."""


def _design(indicator: np.ndarray, covariates: pd.DataFrame | None) -> tuple[np.ndarray, list[str]]:
    """(N, 2 + C) design: intercept, group indicator, covariates (constant ones dropped)."""
    columns = [np.ones_like(indicator), indicator]
    names = ["const", "group"]
    if covariates is not None:
        for name in covariates.columns:
            values = covariates[name].to_numpy(np.float64)
            if np.ptp(values) > 0:
                columns.append(values)
                names.append(name)
    return np.column_stack(columns), names


def _sandwich_cov(x: np.ndarray, y: np.ndarray, mu: np.ndarray, kind: str) -> np.ndarray:
    """Robust covariance of a logit-link binomial GLM: bread @ meat @ bread.

    Args:
        x: (N, P) design; y: (N,) response in [0, 1]; mu: (N,) fitted means.
        kind: "HC0", "HC1" (HC0 * N / (N - P)) or "HC3" (scores scaled by 1 / (1 - leverage)).
    """
    weights = mu * (1.0 - mu)
    bread = np.linalg.inv(x.T @ (x * weights[:, None]))
    scores = x * (y - mu)[:, None]
    n, p = x.shape
    if kind == "HC3":
        leverage = np.einsum("ij,jk,ik->i", x, bread, x) * weights
        scores = scores / np.clip(1.0 - leverage, 1e-8, None)[:, None]
    meat = scores.T @ scores
    cov = bread @ meat @ bread
    if kind == "HC1":
        cov *= n / max(n - p, 1)
    return cov


def fit_logit_glm(
    y: np.ndarray, x: np.ndarray, *, cov_type: str = "nonrobust"
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a binomial GLM with logit link (binary or fractional response).

    Args:
        y: (N,) response in [0, 1]; x: (N, P) design with an intercept column.
        cov_type: "nonrobust" (model-based) or one of :data:`ROBUST_COV_TYPES`.

    Returns:
        ``(params, cov)``: (P,) coefficients and their (P, P) covariance.

    Raises:
        EstimationProblem: perfect separation, no convergence, a singular design.
    """
    sm = require_statsmodels()
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationError

    try:
        from statsmodels.tools.sm_exceptions import PerfectSeparationWarning
    except ImportError:  # older statsmodels raise PerfectSeparationError instead
        PerfectSeparationWarning = ConvergenceWarning

    if x.shape[0] <= x.shape[1]:
        raise EstimationProblem(f"{x.shape[0]} participants for {x.shape[1]} model parameters")
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise EstimationProblem("design matrix is singular (a covariate is collinear with the groups)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            # a fractional response is fine for the quasi-likelihood; silence the domain warning
            warnings.filterwarnings("ignore", message=".*non-integer.*")
            result = sm.GLM(y, x, family=sm.families.Binomial()).fit(maxiter=100)
        except (PerfectSeparationError, PerfectSeparationWarning):
            raise EstimationProblem("perfect separation") from None
        except ConvergenceWarning:
            raise EstimationProblem("the fit did not converge (near-perfect separation?)") from None
        except (np.linalg.LinAlgError, ValueError) as e:
            raise EstimationProblem(f"the fit failed ({e})") from None
    params = np.asarray(result.params, dtype=np.float64)
    mu = np.asarray(result.fittedvalues, dtype=np.float64)
    if not np.all(np.isfinite(params)) or np.max(np.abs(params)) > 30:
        raise EstimationProblem("coefficients diverge (quasi-complete separation)")
    if cov_type == "nonrobust":
        cov = np.asarray(result.cov_params(), dtype=np.float64)
    elif cov_type in ROBUST_COV_TYPES:
        cov = _sandwich_cov(x, y, mu, cov_type)
    else:
        raise ConfigError(f"unknown covariance type {cov_type!r}; choose nonrobust or {', '.join(ROBUST_COV_TYPES)}")
    if not np.all(np.isfinite(np.diag(cov))) or cov[1, 1] <= 0:
        raise EstimationProblem("no finite standard error")
    return params, cov


def _wald(params: np.ndarray, cov: np.ndarray, *, index: int = 1, level: float = 0.95) -> dict:
    from scipy.stats import norm

    coef, se = float(params[index]), math.sqrt(float(cov[index, index]))
    z = coef / se
    q = norm.ppf(0.5 + level / 2)
    with np.errstate(over="ignore"):
        ci_low, ci_high = np.exp([coef - q * se, coef + q * se])
    return {
        "effect": math.exp(coef),
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "z": z,
        "p": float(2.0 * norm.sf(abs(z))),
    }


def _contrast(group_a: str, group_b: str, effect: float) -> str:
    sign = ">" if effect > 1 else "<" if effect < 1 else "="
    return f"{group_a} {sign} {group_b}"


def adjust_pvalues(p: Sequence[float], *, method: str = "fdr_bh") -> np.ndarray:
    """Adjust (N,) p-values for multiple comparisons: one of :data:`P_ADJUST_METHODS`."""
    p = np.asarray(p, dtype=np.float64)
    if method not in P_ADJUST_METHODS:
        raise ConfigError(f"unknown p-value adjustment {method!r}; choose one of {', '.join(P_ADJUST_METHODS)}")
    if method == "none" or p.size == 0:
        return p.copy()
    from statsmodels.stats.multitest import multipletests

    return multipletests(p, method=method)[1]


def encode_covariates(
    covariates: pd.DataFrame, columns: Sequence[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Numeric design columns for covariates, indexed like ``covariates``.

    Numeric columns are kept as they are; text columns become indicator columns (first level,
    in sorted order, is the reference). Rows with a missing value are dropped.

    Returns:
        ``(encoded, problems)``.
    """
    problems = []
    frame = covariates[list(columns)].copy()
    missing = frame.isna().any(axis=1)
    if missing.any():
        ids = ", ".join(map(str, frame.index[missing][:5]))
        more = "" if missing.sum() <= 5 else f" and {int(missing.sum()) - 5} more"
        problems.append(f"participants {ids}{more}: missing covariate value; left out of the comparisons")
        frame = frame[~missing]
    parts = []
    for name in columns:
        col = frame[name]
        numeric = pd.to_numeric(col, errors="coerce")
        if numeric.notna().all():
            parts.append(numeric.astype(float).rename(name))
        else:
            levels = sorted(col.astype(str).unique())
            for level in levels[1:]:
                parts.append((col.astype(str) == level).astype(float).rename(f"{name}[{level}]"))
    encoded = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)
    return encoded, problems


def compare_groups(
    table: pd.DataFrame,
    *,
    actions: Sequence[int],
    groups: Sequence[str] | None = None,
    covariates: pd.DataFrame | None = None,
    prob_cov_type: str = "nonrobust",
    intensity_cov_type: str = "HC3",
    p_adjust: str = "fdr_bh",
    adjust_within: str = "all",
    min_group_size: int = 2,
    min_engagers: int = 2,
    ci_level: float = 0.95,
) -> tuple[pd.DataFrame, list[str]]:
    """Hurdle comparisons for every action and pair of groups.

    Args:
        table: per participant and action (as :func:`mmad.analysis.engagement_table`), with at
            least ``participant_id, group, action_id, engaged, engaged_s, duration_s``;
            ``action`` is used for names when present.
        actions: action ids to compare.
        groups: group order (pairs are taken in this order, effect = first vs second); default
            sorted group names. Groups with fewer than ``min_group_size`` participants are skipped.
        covariates: numeric design columns indexed by participant_id (see
            :func:`encode_covariates`); participants absent from it are left out.
        prob_cov_type, intensity_cov_type: covariance of parts (a) and (b): "nonrobust" or
            HC0/HC1/HC3.
        p_adjust: adjustment method (:data:`P_ADJUST_METHODS`).
        adjust_within: adjust over "all" rows or within each "type", "action" or "contrast".
        min_engagers: fewest engagers per group for part (b).
        ci_level: confidence level of the effect's interval.

    Returns:
        ``(comparisons, problems)``: a DataFrame with :data:`COMPARISON_COLUMNS`, sorted by p,
        and the list of skipped comparisons with reasons.
    """
    if adjust_within not in ADJUST_WITHIN:
        raise ConfigError(f"unknown adjust_within {adjust_within!r}; choose one of {', '.join(ADJUST_WITHIN)}")
    if p_adjust not in P_ADJUST_METHODS:
        raise ConfigError(f"unknown p-value adjustment {p_adjust!r}; choose one of {', '.join(P_ADJUST_METHODS)}")
    require_statsmodels()
    problems: list[str] = []
    data = table
    if covariates is not None:
        keep = data["participant_id"].isin(covariates.index)
        data = data[keep]
    sizes = data.drop_duplicates("participant_id").groupby("group").size()
    order = list(groups) if groups is not None else sorted(sizes.index)
    usable = []
    for g in order:
        n = int(sizes.get(g, 0))
        if n < min_group_size:
            problems.append(f"group {g!r}: {n} participant(s), fewer than {min_group_size}; not compared")
        else:
            usable.append(g)
    if len(usable) < 2:
        problems.append("fewer than two groups can be compared; no comparisons made")
    names = {}
    if "action" in data.columns:
        names = dict(zip(data["action_id"], data["action"]))

    rows = []
    for action_id in actions:
        action = names.get(action_id, str(action_id))
        rows_a = data[data["action_id"] == action_id]
        if len(rows_a) and rows_a["engaged"].sum() == 0:
            problems.append(f"{action}: nobody engaged; skipped")
            continue
        for group_a, group_b in itertools.combinations(usable, 2):
            sub = rows_a[rows_a["group"].isin([group_a, group_b])]
            label = f"{action}, {group_a} vs {group_b}"
            for kind in (PROB, INTENSITY):
                try:
                    row = _one_comparison(
                        sub, kind, group_a, group_b, covariates,
                        cov_type=prob_cov_type if kind == PROB else intensity_cov_type,
                        min_engagers=min_engagers, ci_level=ci_level,
                    )
                except EstimationProblem as e:
                    problems.append(f"{label}, {kind}: {e}; skipped")
                    continue
                row.update(action_id=int(action_id), action=action)
                rows.append(row)
    result = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    floats = ["effect", "ci_low", "ci_high", "z", "p", "p_adj", "summary_a", "summary_b"]
    ints = ["action_id", "n_a", "n_b", "engaged_a", "engaged_b"]
    result = result.astype({**dict.fromkeys(floats, float), **dict.fromkeys(ints, int)})
    if len(result):
        if adjust_within == "all":
            result["p_adj"] = adjust_pvalues(result["p"], method=p_adjust)
        else:
            key = {"type": "type", "action": "action_id", "contrast": ["group_a", "group_b"]}[adjust_within]
            result["p_adj"] = result.groupby(key, group_keys=False)["p"].transform(
                lambda s: pd.Series(adjust_pvalues(s, method=p_adjust), index=s.index)
            )
        result = result.sort_values(["p", "action_id", "type"], kind="stable").reset_index(drop=True)
    return result, problems


def _one_comparison(sub, kind, group_a, group_b, covariates, *, cov_type, min_engagers, ci_level) -> dict:
    in_a = (sub["group"] == group_a).to_numpy()
    engaged = sub["engaged"].to_numpy(np.float64)
    n_a, n_b = int(in_a.sum()), int((~in_a).sum())
    eng_a, eng_b = int(engaged[in_a].sum()), int(engaged[~in_a].sum())
    if kind == PROB:
        if eng_a + eng_b == 0:
            raise EstimationProblem("nobody engaged")
        if eng_a + eng_b == n_a + n_b:
            raise EstimationProblem("no variance (everyone engaged)")
        for g, e, n in ((group_a, eng_a, n_a), (group_b, eng_b, n_b)):
            if e in (0, n):
                raise EstimationProblem(f"perfect separation ({'none' if e == 0 else 'all'} of {g} engaged)")
        y, rows_used = engaged, np.ones(len(sub), dtype=bool)
        summary_a, summary_b = eng_a / n_a, eng_b / n_b
    else:
        rows_used = engaged > 0
        for g, e in ((group_a, eng_a), (group_b, eng_b)):
            if e < min_engagers:
                raise EstimationProblem(f"{e} engager(s) in {g}, fewer than {min_engagers}")
        proportion = (sub["engaged_s"] / sub["duration_s"]).to_numpy(np.float64).clip(0.0, 1.0)
        y = proportion[rows_used]
        if np.ptp(y) == 0:
            raise EstimationProblem("no variance (every engager has the same proportion)")
        for g, mask in ((group_a, in_a[rows_used]), (group_b, ~in_a[rows_used])):
            if np.all(y[mask] == 0) or np.all(y[mask] == 1):
                raise EstimationProblem(f"perfect separation (every engager of {g} at {y[mask][0]:.0%})")
        summary_a = 100.0 * float(y[in_a[rows_used]].mean())
        summary_b = 100.0 * float(y[~in_a[rows_used]].mean())
    cov_rows = None
    if covariates is not None and covariates.shape[1]:
        cov_rows = covariates.loc[sub["participant_id"].to_numpy()[rows_used]]
    x, _ = _design(in_a[rows_used].astype(np.float64), cov_rows)
    params, cov = fit_logit_glm(y, x, cov_type=cov_type)
    stats = _wald(params, cov, level=ci_level)
    used_a = int(in_a[rows_used].sum())
    used_b = int((~in_a[rows_used]).sum())
    return {
        "contrast": _contrast(group_a, group_b, stats["effect"]),
        "type": kind,
        **stats,
        "p_adj": np.nan,
        "group_a": group_a,
        "group_b": group_b,
        "n_a": used_a,
        "n_b": used_b,
        "engaged_a": eng_a,
        "engaged_b": eng_b,
        "summary_a": summary_a,
        "summary_b": summary_b,
    }


def format_p(p: float) -> str:
    """A p-value as in journal tables: ``<.001``, ``.004``, ``.120``, ``1.000``."""
    if not np.isfinite(p):
        return ""
    if p < 0.001:
        return "<.001"
    text = f"{p:.3f}"
    return text[1:] if text.startswith("0") else text


def comparisons_markdown(comparisons: pd.DataFrame, *, alpha: float = 0.05, only_significant: bool = True) -> str:
    """A Markdown table like the paper's Table V: action, contrast, type, effect [CI], p, p_adj.

    Args:
        comparisons: the output of :func:`compare_groups`.
        alpha: rows with unadjusted ``p < alpha`` are shown when ``only_significant``.
    """
    rows = comparisons[comparisons["p"] < alpha] if only_significant else comparisons
    lines = [
        "| Action | Contrast | Type | Effect | 95% CI | p | p_adj |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    for r in rows.itertuples(index=False):
        lines.append(
            f"| {r.action} | {r.contrast} | {r.type} | {r.effect:.2f} | {r.ci_low:.2f}-{r.ci_high:.2f} "
            f"| {format_p(r.p)} | {format_p(r.p_adj)} |"
        )
    if len(rows) == 0:
        lines.append(f"| (no comparison with p < {alpha:g}) | | | | | | |")
    return "\n".join(lines) + "\n"
