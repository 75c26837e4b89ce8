"""Altair charts of study results. Builders are pure `DataFrame -> alt.Chart`; saving is the caller's.

Charts embed their data; Altair refuses more than 5000 rows unless
`alt.data_transformers.disable_max_rows()` is called (the CLI does).
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from analysis.columns import (
    distinct,
    metrics_with_values,
    present,
    require_columns,
    require_numeric,
    require_single,
    REFERENCE_TEST_SETS,
    rows_with,
    test_sets_with,
    without_reference_sets,
)
from analysis.errors import AnalysisError
from analysis.frontier import pareto_front
from analysis.tables import ok_rows, summary_table

TITLES = {
    "force_rmse_mev_a": "Force RMSE (meV/Å)",
    "energy_rmse_mev_atom": "Energy RMSE (meV/atom)",
    "rel_energy_rmse_mev": "Relative-energy RMSE (meV)",
    "rel_energy_max_error_mev": "Largest relative-energy error (meV)",
    "barrier_error_mev": "Barrier error, predicted - reference (meV)",
    "val_force_rmse_mev_a": "Validation force RMSE (meV/Å)",
    "val_energy_rmse_mev_atom": "Validation energy RMSE (meV/atom)",
    "wall_time_s": "Wall time (s)",
    "total_wall_time_s": "Wall time incl. first order (s)",
    "lr": "Learning rate",
    "step": "Step (epoch or L-BFGS iteration)",
    "loss": "Training loss",
    "grad_norm": "Gradient norm",
}
IDENTITY = ("trial_id", "optimizer", "lr", "seed", "stage", "test_set")
# A test set's front is drawn on the first of these it holds: forces where it has them, else energies.
FRONT_METRICS = ("force_rmse_mev_a", "energy_rmse_mev_atom")
WITH_ORDER = (*IDENTITY, "optimizer_order")  # what a chart keeps of the rows: colours follow the registry
WIDTH, HEIGHT, FACET_WIDTH = 420, 280, 280
# One colour per optimizer in every chart, however the data were filtered (Tableau 10).
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d",
           "#ff9da6", "#bab0ac")


def title(column: str) -> str:
    """Axis title for `column`, with units where known."""
    return TITLES.get(column, column)


def frontier_chart(df: pd.DataFrame, x: str = "wall_time_s", y: str = "force_rmse_mev_a", *,
                   log_x: bool = False, log_y: bool = False) -> alt.LayerChart:
    """Trials as points (colour: optimizer, shape: stage) with their Pareto front, both minimised,
    as a dashed step line. `df` must hold one test set (the paper's Fig. 6 uses one per panel);
    where it has a status column only 'ok' rows are drawn (a diverged trial is fast, not good)."""
    require_numeric(df, [x, y])
    require_single(df, "test_set", "pick one test set for a front")
    rows = ok_rows(df) if "status" in df else df
    data = rows[[*present(rows, WITH_ORDER), x, y]].dropna(subset=[x, y])
    front = pareto_front(data, [x, y]).sort_values([x, y])
    x_enc, y_enc = alt.X(x, title=title(x), scale=_scale(log_x)), alt.Y(y, title=title(y), scale=_scale(log_y))
    points = alt.Chart(data).mark_point(filled=True, size=70, opacity=0.8).encode(
        x=x_enc, y=y_enc, color=_color(data), tooltip=[*present(data, IDENTITY), x, y],
        **({"shape": alt.Shape("stage:N", title="stage")} if "stage" in data else {}))
    line = alt.Chart(front).mark_line(interpolate="step-after", color="black", strokeDash=[5, 3]).encode(
        x=x_enc, y=y_enc)
    return (line + points).properties(title=_frontier_title(df, x, y), width=WIDTH, height=HEIGHT)


def frontier_panels(df: pd.DataFrame, x: str = "wall_time_s", y: str = "force_rmse_mev_a", *,
                    log_x: bool = False, log_y: bool = False) -> alt.TopLevelMixin:
    """`frontier_chart` for each test set of `df` that holds `y`, side by side (two per row); one
    chart for one. The foundation's scores before fine-tuning (`REFERENCE_TEST_SETS`) are not drawn."""
    charts = [frontier_chart(rows, x, y, log_x=log_x, log_y=log_y)
              for _, rows in compared_rows(df, y).groupby("test_set", sort=False)]
    return charts[0] if len(charts) == 1 else alt.concat(*charts, columns=2)


def compared_rows(df: pd.DataFrame, y: str) -> pd.DataFrame:
    """The rows fronts and charts compare optimizers on by `y`: those of the test sets that hold `y`,
    less the foundation's scores before fine-tuning (the same for every trial); raises where none are left."""
    candidates = without_reference_sets(df)
    if candidates.empty:
        raise AnalysisError("no rows to compare: only the foundation's scores before fine-tuning, the same for "
                            "every trial")
    return rows_with(candidates, y)


def fronts_left_out(df: pd.DataFrame, y: str) -> str:
    """A line naming the test sets of `df` that get no front of `y`, and why; '' where every one does."""
    held = set(test_sets_with(df, y))
    missing = [name for name in distinct(without_reference_sets(df)["test_set"]) if name not in held]
    references = [name for name in distinct(df["test_set"]) if name in REFERENCE_TEST_SETS]
    reasons = [*([f"{', '.join(missing)}: no {y} (--y chooses another column)"] if missing else []),
               *([f"{', '.join(references)}: the foundation before fine-tuning"] if references else [])]
    return f"no front for {'; '.join(reasons)}" if reasons else ""


def front_metrics(df: pd.DataFrame) -> dict[str, list[str]]:
    """Metric -> the test sets whose front is drawn on it: each test set of `df` (reference sets
    aside) on the first of `FRONT_METRICS` it holds, so an energy-only set gets an energy front."""
    fronts: dict[str, list[str]] = {}
    for test_set in distinct(without_reference_sets(df)["test_set"]):
        if held := metrics_with_values(df[df["test_set"] == test_set], FRONT_METRICS):
            fronts.setdefault(held[0], []).append(test_set)
    return fronts


def improvement_chart(improvement: pd.DataFrame) -> alt.LayerChart:
    """Bars of `improvement_vs` output: improvement (%) over the baseline per optimizer, grouped by
    test set; above zero is better than the baseline."""
    require_columns(improvement, ["optimizer", "test_set", "mean", "baseline_mean", "improvement_pct", "baseline",
                                  "metric"], "the improvement table")
    if improvement.empty:
        raise AnalysisError("the improvement table is empty")
    order = distinct(improvement["test_set"])
    bars = alt.Chart(improvement).mark_bar().encode(
        x=alt.X("optimizer:N", title=None, sort=ordered_optimizers(improvement), axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("test_set:N", sort=order),
        y=alt.Y("improvement_pct:Q", title=f"Improvement over {improvement['baseline'].iloc[0]} (%)"),
        color=alt.Color("test_set:N", sort=order, title="test set"),
        tooltip=["optimizer", "test_set", alt.Tooltip("improvement_pct:Q", format=".1f"), "mean", "baseline_mean"])
    zero = alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(color="black").encode(y="zero:Q")
    return (bars + zero).properties(title=f"{title(improvement['metric'].iloc[0])}: relative improvement",
                                    width=WIDTH, height=HEIGHT)


def curves_chart(curves: pd.DataFrame, y: str = "val_force_rmse_mev_a", x: str = "step", *,
                 log_y: bool = True) -> alt.Chart | alt.FacetChart:
    """Learning curves: `y` against `x`, one line per trial, coloured by optimizer; one panel per
    stage (first-order epochs and L-BFGS iterations have their own x axes) where there are several."""
    require_numeric(curves, [x, y])
    data = curves[[*present(curves, WITH_ORDER), x, y]].dropna(subset=[x, y])
    lines = alt.Chart(data).mark_line(opacity=0.7, strokeWidth=1.5).encode(
        x=alt.X(x, title=title(x), axis=alt.Axis(tickMinStep=1) if x == "step" else alt.Axis()),
        y=alt.Y(y, title=title(y), scale=_scale(log_y)),
        color=_color(data), detail="trial_id:N", tooltip=[*present(data, IDENTITY), x, y])
    if "stage" not in data or len(stages := distinct(data["stage"])) < 2:
        return lines.properties(title=title(y), width=WIDTH, height=HEIGHT)
    panels = lines.properties(width=FACET_WIDTH, height=HEIGHT)
    return panels.facet(column=alt.Column("stage:N", sort=stages, title=None), title=title(y)).resolve_scale(
        x="independent", y="independent")


def lr_sensitivity_chart(df: pd.DataFrame, metric: str = "force_rmse_mev_a") -> alt.LayerChart | alt.FacetChart:
    """Seed-mean `metric` against learning rate (log x) per optimizer, with mean ± std error bars;
    one panel per test set that holds `metric` (the foundation's scores before fine-tuning aside).
    Uses rows with status 'ok'."""
    df = compared_rows(df, metric)
    summary = summary_table(df, [metric], by=("optimizer", "lr"), conditions=present(df, ["test_set"]))
    mean, std = summary[f"{metric}_mean"], summary[f"{metric}_std"]
    data = summary.assign(mean=mean, low=mean - std, high=mean + std)
    if positions := registry_positions(df):
        data = data.assign(optimizer_order=data["optimizer"].map(positions))
    lr_axis = alt.Axis(values=sorted(distinct(data["lr"])), format="~g")
    base = alt.Chart().encode(x=alt.X("lr:Q", title=title("lr"), scale=alt.Scale(type="log"), axis=lr_axis),
                              color=_color(data))
    y = alt.Y("mean:Q", title=title(metric), scale=alt.Scale(zero=False))
    line = base.mark_line(point=True).encode(y=y, tooltip=[*present(data, IDENTITY), "mean", f"{metric}_std"])
    bars = base.mark_errorbar(ticks=True).encode(y=alt.Y("low:Q", title=title(metric)), y2="high:Q")
    chart = alt.layer(bars, line, data=data).properties(width=FACET_WIDTH, height=HEIGHT)
    if "test_set" not in data or len(test_sets := distinct(data["test_set"])) < 2:
        return chart.properties(title=f"{title(metric)} vs learning rate")
    return chart.facet(column=alt.Column("test_set:N", sort=test_sets, title=None),
                       title=f"{title(metric)} vs learning rate")


def _scale(log: bool) -> alt.Scale:
    return alt.Scale(type="log", nice=False) if log else alt.Scale(zero=False)


def _color(data: pd.DataFrame) -> alt.Color:
    names, positions = ordered_optimizers(data), registry_positions(data)
    scale = alt.Scale(domain=names, range=[optimizer_color(name, names, positions) for name in names])
    return alt.Color("optimizer:N", scale=scale, sort=names, title="optimizer")


def registry_positions(data: pd.DataFrame) -> dict[str, int]:
    """Each optimizer's position in the study's optimizer registry (the rows' `optimizer_order`,
    which a study writes); {} for rows without it."""
    if "optimizer_order" not in data:
        return {}
    pairs = data[["optimizer", "optimizer_order"]].dropna().drop_duplicates("optimizer")
    return {name: int(position) for name, position in zip(pairs["optimizer"], pairs["optimizer_order"])}


def ordered_optimizers(data: pd.DataFrame) -> list[str]:
    """The optimizers of `data` in registry order, then any without a position in order of appearance."""
    names, positions = distinct(data["optimizer"]), registry_positions(data)
    return sorted(names, key=lambda name: (name not in positions, positions.get(name, 0), names.index(name)))


def optimizer_color(name: str, names: list[str], positions: dict[str, int]) -> str:
    """A fixed colour per registry position, so an optimizer keeps its colour however the data were
    filtered; optimizers without one take the colours after the registry's, in order of `names`."""
    if name in positions:
        return PALETTE[positions[name] % len(PALETTE)]
    others = [n for n in names if n not in positions]
    return PALETTE[(max(positions.values(), default=-1) + 1 + others.index(name)) % len(PALETTE)]


def _frontier_title(df: pd.DataFrame, x: str, y: str) -> str:
    on = f" on {df['test_set'].iloc[0]}" if "test_set" in df and len(df) else ""
    return f"{title(y)}{on} vs {title(x).lower()}"


def performance_profile_chart(profiles: pd.DataFrame) -> alt.Chart:
    """Performance profiles of `analysis.stats.performance_profiles` output: rho(tau), the share of
    problems on which an optimizer is within a factor tau of the best, against tau (log x), one
    step line per optimizer. Higher and further left is better."""
    require_columns(profiles, ["optimizer", "tau", "rho", "problems", "metric"], "the profiles")
    if profiles.empty:
        raise AnalysisError("the profiles table is empty")
    lines = alt.Chart(profiles).mark_line(interpolate="step-after", strokeWidth=2).encode(
        x=alt.X("tau:Q", title="tau (ratio to the best seed mean)", scale=alt.Scale(type="log", nice=False)),
        y=alt.Y("rho:Q", title="rho(tau): share of problems", scale=alt.Scale(domain=[0, 1])),
        color=_color(profiles), tooltip=["optimizer", alt.Tooltip("tau:Q", format=".3f"), "rho"])
    problems = int(profiles["problems"].iloc[0])
    return lines.properties(title=f"{title(profiles['metric'].iloc[0])}: performance profiles over {problems} problems",
                            width=WIDTH, height=HEIGHT)
