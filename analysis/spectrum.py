"""Why optimizers differ: the curvature rows of the `spectrum` evaluator, per optimizer.

The rows are `load(study, table="properties")` with evaluator "spectrum": per model, `H_*` and
`PH_*` (the Hessian of Eq. 1 and P^(1/2) H P^(1/2), P the optimizer's preconditioner at the final
weights): `lambda_max`, `lambda_low`, `kappa = lambda_max / lambda_low`, `trace`, and `alpha = 1 -
log kappa(PH) / log kappa(H)` (Appendix A: ~1 for Adam-type scaling, 0 for SGD). The `*_trace`
rows carry the stochastic Lanczos quadrature (nodes and weights per probe, JSON in `note`), from
which the spectral densities are drawn. Pure functions: `DataFrame -> DataFrame` and `DataFrame ->
alt.Chart`.
"""

from __future__ import annotations

import json
import math

import altair as alt
import numpy as np
import pandas as pd
from scipy import stats

from analysis.charts import FACET_WIDTH, HEIGHT, _color
from analysis.columns import present, require_columns
from analysis.errors import AnalysisError

EVALUATOR = "spectrum"
OPERATORS = ("H", "PH")
SUMMARY = ("H_kappa", "PH_kappa", "alpha", "H_lambda_max", "PH_negative_mass")
MODEL_KEYS = ("study", "trial_id", "stage")
GRID = np.linspace(-0.2, 1.05, 251)   # eigenvalue / lambda_max of the model's operator
DENSITY_WIDTH = 0.01                  # the Gaussian each SLQ node is drawn as, in units of lambda_max
DENSITY_FLOOR = 1e-6                  # the log axis's bottom


def spectrum_rows(properties: pd.DataFrame) -> pd.DataFrame:
    """The spectrum evaluator's "ok" rows; raises when a study has none."""
    require_columns(properties, ("evaluator", "property", "value", "status", "optimizer", "stage", "seed"),
                    "the properties table")
    rows = properties[(properties["evaluator"] == EVALUATOR) & (properties["status"] == "ok")]
    if rows.empty:
        raise AnalysisError("no 'ok' spectrum rows: run a space with evaluators = [\"spectrum\"] (e.g. --space curvature)")
    return rows


def per_model(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per model: optimizer, stage, seed and every spectrum property as a column."""
    keys = [*present(rows, MODEL_KEYS), "optimizer", "stage", "seed"]
    keys = list(dict.fromkeys(keys))
    return rows.pivot_table(index=keys, columns="property", values="value", aggfunc="first").reset_index()


def at_floor(rows: pd.DataFrame, relative_floor: float, quantile: float) -> pd.DataFrame:
    """`per_model(rows)` with kappa(H), kappa(PH) and alpha recomputed from the stored SLQ quadratures
    with another floor (a fraction of lambda_max) and quantile: the evaluator's estimator
    (lambda_low = the quantile of the spectral mass above the floor, kappa = lambda_max / lambda_low),
    to see how much a kappa owes to where the unresolved bulk near 0 falls."""
    models, nodes = per_model(rows), quadratures(rows)
    keys = [c for c in models.columns if c in (*MODEL_KEYS, "optimizer", "seed")]
    above = nodes[nodes["node"] > relative_floor].sort_values("node")

    def lowest(group: pd.DataFrame) -> float:
        cumulative = (group["weight"].cumsum() / group["weight"].sum()).to_numpy()
        return float(group["node"].iloc[min(int(np.searchsorted(cumulative, quantile)), len(group) - 1)])

    lows = above.groupby([*keys, "operator"])[["node", "weight"]].apply(lowest).unstack("operator")
    kappas = (1.0 / lows).add_suffix("_kappa").reset_index()
    models = models.drop(columns=["H_kappa", "PH_kappa", "alpha"]).merge(kappas, on=keys)
    return models.assign(alpha=1.0 - np.log(models["PH_kappa"]) / np.log(models["H_kappa"]))


def kappa_alpha_table(models: pd.DataFrame) -> pd.DataFrame:
    """Per (stage, optimizer) of `per_model` rows: mean and standard deviation over seeds of kappa(H),
    kappa(PH), alpha and friends (SUMMARY), and the seeds counted."""
    columns = [c for c in SUMMARY if c in models]
    grouped = models.groupby(["stage", "optimizer"])[columns]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_std"))
    table["seeds"] = grouped.size()
    return table.reset_index()


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    """`kappa_alpha_table` as "mean (std)" text cells: kappas to 3 significant digits, alpha to 2 decimals."""
    out = table[["stage", "optimizer", "seeds"]].copy()
    for name in SUMMARY:
        if f"{name}_mean" in table:
            digits = "{:.2f}" if name in ("alpha", "PH_negative_mass") else "{:.3g}"
            out[name] = [f"{digits.format(m)} ({digits.format(s)})" if not math.isnan(s) else digits.format(m)
                         for m, s in zip(table[f"{name}_mean"], table[f"{name}_std"])]
    return out


def quadratures(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, operator, SLQ node): `node` / lambda_max of that operator, and `weight`
    (a probe's weights sum to 1; divided by the probes, a model's sum to 1)."""
    models = per_model(rows)
    traces = rows[rows["property"].isin([f"{op}_trace" for op in OPERATORS])]
    keys = [c for c in models.columns if c in (*MODEL_KEYS, "optimizer", "seed")]
    records = []
    for _, row in traces.iterrows():
        operator = row["property"].removesuffix("_trace")
        model = models[np.logical_and.reduce([models[k] == row[k] for k in keys])].iloc[0]
        quadrature = json.loads(row["note"])
        scale, probes = model[f"{operator}_lambda_max"], len(quadrature["nodes"])
        for nodes, weights in zip(quadrature["nodes"], quadrature["weights"]):
            records += [{**{k: row[k] for k in keys}, "operator": operator, "node": n / scale, "weight": w / probes}
                        for n, w in zip(nodes, weights)]
    return pd.DataFrame.from_records(records)


def densities(rows: pd.DataFrame) -> pd.DataFrame:
    """The spectral density of H and PH per (stage, optimizer): each model's SLQ nodes drawn as
    Gaussians of width DENSITY_WIDTH on GRID (eigenvalue / lambda_max), averaged over seeds."""
    nodes = quadratures(rows)
    kernel = lambda x: np.exp(-0.5 * ((GRID[:, None] - x[None, :]) / DENSITY_WIDTH) ** 2)  # noqa: E731
    frames = []
    for (stage, optimizer, operator), group in nodes.groupby(["stage", "optimizer", "operator"]):
        seeds = group["seed"].nunique()
        density = kernel(group["node"].to_numpy()) @ group["weight"].to_numpy() / (seeds * DENSITY_WIDTH * math.sqrt(2 * math.pi))
        frames.append(pd.DataFrame({"stage": stage, "optimizer": optimizer, "operator": operator,
                                    "eigenvalue_over_max": GRID, "density": np.maximum(density, DENSITY_FLOOR)}))
    return pd.concat(frames, ignore_index=True)


def density_chart(rows: pd.DataFrame) -> alt.FacetChart:
    """Spectral densities, one panel per (stage, operator), one line per optimizer, log density."""
    data = densities(rows)
    return alt.Chart(data).mark_line().encode(
        x=alt.X("eigenvalue_over_max:Q", title="eigenvalue / lambda_max"),
        y=alt.Y("density:Q", scale=alt.Scale(type="log"), title="spectral density (SLQ)"),
        color=_color(data),
    ).properties(width=FACET_WIDTH, height=HEIGHT).facet(row="stage:N", column="operator:N")


def kappa_error_correlation(models: pd.DataFrame, scores: pd.DataFrame, *, test_set: str,
                            metric: str = "force_rmse_mev_a", kappa: str = "PH_kappa") -> dict[str, float]:
    """Spearman's rank correlation over `per_model` rows (every seed and stage a point) of `kappa` with
    `metric` on `test_set`: {"rho", "p_value" (scipy's, two-sided), "points"}. NaN below 3 points."""
    require_columns(scores, ["trial_id", "stage", "test_set", "status", metric], "the scores table")
    chosen = scores[(scores["test_set"] == test_set) & (scores["status"] == "ok")]
    keys = [k for k in MODEL_KEYS if k in models and k in chosen]
    merged = models.merge(chosen[[*keys, metric]], on=keys).dropna(subset=[kappa, metric])
    if len(merged) < 3:
        return {"rho": math.nan, "p_value": math.nan, "points": len(merged)}
    result = stats.spearmanr(merged[kappa], merged[metric])
    return {"rho": float(result.statistic), "p_value": float(result.pvalue), "points": len(merged)}
