"""Physical properties of the fine-tuned models (the evaluate stage; the paper's Figs. 3-5):
optimizer x property tables, MD survival and frequency-error charts, and whether a lower force RMSE
buys a better property (a Pareto front of the two).

The rows are `load(study, table="properties")`: one per (trial, stage of the model evaluated,
evaluator, property) with `value`, `reference`, `error = value - reference`, `unit`, `status`
(ok, skipped, failed, unstable) and `ranked` (False for a sanity check; tables of older studies
without the column count every property as ranked). A property is *measured* where its value
exists: "ok" rows and an MD run that became "unstable" (its survival time, shown in the survival
chart and the RMSE fronts). Means and ranks take "ok" rows only: a model whose MD went unstable is
out of the rankings and counted in its table cell ("[1 unstable]"), and a sanity check is shown,
labelled "not ranked", never ranked. Closeness to the reference, `|error|`, ranks optimizers on
every ranked property (lower is better: for the MD survival time it is the time short of the full
run). Pure functions: `DataFrame -> DataFrame` and `DataFrame -> alt.Chart`.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from analysis.charts import HEIGHT, IDENTITY, WIDTH, _color, frontier_chart, ordered_optimizers
from analysis.columns import distinct, present, require_columns
from analysis.errors import AnalysisError
from analysis.frontier import pareto_front
from analysis.render import check_format, mark, widen
from analysis.tables import rank_within

MEASURED = ("ok", "unstable")
UNSTABLE = "unstable"
QUANTITIES = ("value", "abs_error", "error")
FREQUENCY_PROPERTIES = ("vib_frequency_mae", "vib_frequency_max_error", "phonon_gamma_mae", "acoustic_frequency_mae",
                        "dispersion_mae", "dispersion_max_error")
NOT_RANKED = "; not ranked"
PROPERTY_COLUMNS = ("trial_id", "stage", "optimizer", "lr", "seed", "evaluator", "property", "value", "error",
                    "unit", "status")


def measured(df: pd.DataFrame) -> pd.DataFrame:
    """The rows whose property was measured (status ok or unstable, a value), with `abs_error`;
    raises naming the statuses when there are none."""
    require_columns(df, PROPERTY_COLUMNS, "the properties table")
    rows = df[df["status"].isin(MEASURED) & df["value"].notna()]
    if rows.empty:
        raise AnalysisError(f"no measured property (status ok or unstable with a value); statuses: "
                            f"{', '.join(map(str, distinct(df['status'])))}")
    return rows.assign(abs_error=pd.to_numeric(rows["error"]).abs())  # all None: an object column


def ranked_row(rows: pd.DataFrame) -> pd.Series:
    """Whether each row's property is ranked (False for a sanity check; True where the table predates
    the `ranked` column)."""
    if "ranked" not in rows:
        return pd.Series(True, index=rows.index)
    return rows["ranked"].astype("boolean").fillna(True).astype(bool)


def property_label(rows: pd.DataFrame) -> pd.Series:
    """'property (unit)' per row; 'property (unit; not ranked)' for a sanity check."""
    return rows["property"] + " (" + rows["unit"].fillna("") + ranked_row(rows).map({True: "", False: NOT_RANKED}) + ")"


def default_by(rows: pd.DataFrame) -> list[str]:
    """optimizer, then lr and stage where the rows hold several."""
    return ["optimizer", *(c for c in ("lr", "stage") if c in rows and rows[c].nunique() > 1)]


def property_summary(df: pd.DataFrame, *, quantity: str = "value", by: Sequence[str] | None = None) -> pd.DataFrame:
    """Per (`by`, property): mean, std (ddof=1) and count over the seeds whose row is "ok" of
    `quantity` ('value', 'abs_error' or 'error'), `n_unstable` (seeds whose MD went unstable: out of
    the mean), `n_of` (the seeds evaluated, measured or not) and `rank`: the rank of the mean
    |error| within the property and the other `by` columns (1 = closest to the reference; none for a
    property that is not ranked or a group without an "ok" row)."""
    if quantity not in QUANTITIES:
        raise AnalysisError(f"unknown quantity {quantity!r}; choose one of {', '.join(QUANTITIES)}")
    rows = measured(df)
    by = list(by) if by is not None else default_by(rows)
    keys = [*by, "label"]
    considered = df[df["status"].isin(MEASURED)].assign(label=property_label(df), ranked=ranked_row(df))
    if considered.duplicated([*keys, "seed"]).any():
        raise AnalysisError(f"several rows per seed for some ({', '.join(keys)}): filter the rows (a study loaded "
                            "twice, or several lrs or stages: group by them)")
    groups = considered.assign(unstable=considered["status"] == UNSTABLE).groupby(keys, sort=False)
    stats = groups.agg(n_unstable=("unstable", "sum"), ranked=("ranked", "all"))
    ok = rows[rows["status"] == "ok"].assign(label=property_label(rows)).groupby(keys, sort=False)
    stats = stats.join(ok[quantity].agg(["mean", "std", "count"])).join(ok["abs_error"].mean().rename("abs_error_mean"))
    stats = stats.reset_index().assign(count=lambda t: t["count"].fillna(0).astype(int))
    evaluated = df.assign(label=property_label(df)).groupby(keys, sort=False)["seed"].nunique()
    stats["n_of"] = evaluated.reindex(pd.MultiIndex.from_frame(stats[keys])).to_numpy()
    stats["rank"] = rank_within(stats.assign(ranked_error=stats["abs_error_mean"].where(stats["ranked"])),
                                "ranked_error", ["label", *by[1:]])
    order = ordered_optimizers(rows)
    columns = [*keys, "mean", "std", "count", "abs_error_mean", "n_unstable", "n_of", "rank"]
    return stats[columns].sort_values(by[:1], key=lambda c: c.map(order.index), kind="stable").reset_index(drop=True)


def property_table(df: pd.DataFrame, *, quantity: str = "value", by: Sequence[str] | None = None,
                   fmt: str = "text") -> pd.DataFrame:
    """Wide table: one row per optimizer (and lr, stage where several), one column per
    'property (unit)', cells "mean (std)" over seeds of `quantity` (3 and 2 significant digits); the two
    closest to the reference (lowest mean |error|) marked as `fmt` marks them (`analysis.render.MARKS`).
    A cell measured on fewer seeds than were evaluated says so, e.g. "[1/2]" (a failed relaxation;
    "-": none), and counts the seeds whose MD went unstable, out of the mean: "[1/2; 1 unstable]".
    A sanity check's column says "not ranked" and is never marked. Render it with
    `analysis.render(table, fmt)`."""
    check_format(fmt)
    stats = property_summary(df, quantity=quantity, by=by)
    by = [c for c in stats.columns
          if c not in ("label", "mean", "std", "count", "abs_error_mean", "n_unstable", "n_of", "rank")]
    cells = [mark(_cell(*values), rank, fmt) for *values, rank in
             zip(stats["mean"], stats["std"], stats["count"], stats["n_of"], stats["n_unstable"], stats["rank"])]
    return widen(stats[[*by, "label"]].assign(cell=cells), by, ["label"])


def _cell(mean: float, std: float, count: int, total: int, unstable: int) -> str:
    """"mean (std)" ("-" without an "ok" seed) and, in brackets, the seeds it covers where fewer than
    were evaluated and how many went unstable."""
    counts = [f"{count}/{total}"] if count < total else []
    counts += [f"{unstable} unstable"] if unstable else []
    return ("-" if count == 0 else _mean_std(mean, std)) + (f" [{'; '.join(counts)}]" if counts else "")


def _mean_std(mean: float, std: float) -> str:
    return _number(mean, 3) if np.isnan(std) else f"{_number(mean, 3)} ({_number(std, 2)})"


def _number(x: float, digits: int) -> str:
    """`digits` significant digits, but no exponent for a number of 100 or more (1256, not 1.26e+03)."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.{digits}g}"


def md_survival_chart(df: pd.DataFrame) -> alt.TopLevelMixin:
    """MD survival time (ps) per optimizer: each seed's model a point (filled: stable to the end,
    hollow: unstable), the mean a bar, the run's full length a dashed rule; one panel per stage
    where there are several."""
    rows = measured(df)
    rows = rows[rows["property"] == "md_survival_time"]
    if rows.empty:
        raise AnalysisError("no measured md_survival_time: the study has no MD evaluator, or every MD run failed")
    data = rows[[*present(rows, (*IDENTITY, "optimizer_order")), "value", "reference", "status"]]
    order = ordered_optimizers(data)
    x = alt.X("optimizer:N", sort=order, title=None)
    y_title = "MD survival time (ps)"
    y = alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=True))
    bars = alt.Chart(data).mark_bar(opacity=0.35).encode(x=x, y=alt.Y("mean(value):Q", title=y_title),
                                                         color=_color(data))
    points = alt.Chart(data).mark_point(size=70).encode(
        x=x, y=y, color=_color(data), fill=alt.condition("datum.status == 'ok'", _color(data), alt.value("white")),
        tooltip=[*present(data, ("optimizer", "lr", "seed", "stage", "trial_id")), "value", "status"])
    full = alt.Chart(data).mark_rule(strokeDash=[5, 3], color="black").encode(y="max(reference):Q")
    chart = (bars + points + full).properties(width=WIDTH, height=HEIGHT, title="MD survival time per optimizer")
    return _by_stage(chart, data)


def frequency_error_chart(df: pd.DataFrame) -> alt.TopLevelMixin:
    """Frequency errors per optimizer, one panel per frequency property measured, titled with its
    unit (vibrations: MAE and max error against the labeller, cm^-1; phonons at Gamma and near it,
    cm^-1; the dispersion along the high-symmetry path: MAE and max error, THz): the mean a bar,
    each seed a point; each panel on its own scale."""
    rows = measured(df)
    rows = rows[rows["property"].isin(FREQUENCY_PROPERTIES)]
    if rows.empty:
        raise AnalysisError(f"no measured frequency property ({', '.join(FREQUENCY_PROPERTIES)})")
    data = rows[[*present(rows, (*IDENTITY, "optimizer_order")), "property", "unit", "value"]]
    data = data.assign(property=data["property"] + " (" + data["unit"] + ")")
    if "stage" in data and data["stage"].nunique() > 1:
        data = data.assign(property=data["property"] + " / " + data["stage"])
    order = ordered_optimizers(data)
    x = alt.X("optimizer:N", sort=order, title=None)
    bars = alt.Chart().mark_bar(opacity=0.35).encode(x=x, y=alt.Y("mean(value):Q", title="Error"),
                                                     color=_color(data))
    points = alt.Chart().mark_point(size=60, filled=True).encode(
        x=x, y="value:Q", color=_color(data), tooltip=[*present(data, ("optimizer", "lr", "seed", "stage")), "value"])
    return alt.layer(bars, points, data=data).properties(width=WIDTH // 2 + 60, height=HEIGHT).facet(
        column=alt.Column("property:N", title=None, sort=distinct(data["property"])),
        title="Frequency errors per optimizer").resolve_scale(y="independent")


def _by_stage(chart: alt.LayerChart, data: pd.DataFrame) -> alt.TopLevelMixin:
    if "stage" not in data or data["stage"].nunique() < 2:
        return chart
    return chart.properties(data=data).facet(column=alt.Column("stage:N", sort=distinct(data["stage"]), title=None))


def rmse_vs_property(properties: pd.DataFrame, scores: pd.DataFrame, prop: str, *, test_set: str = "val",
                     metric: str = "force_rmse_mev_a") -> pd.DataFrame:
    """One row per evaluated model: its `metric` on `test_set` (from the scores table) beside
    `property_abs_error`, the |error| of `prop` (from the properties table), joined on (study,
    trial, stage); a model whose property was not measured is left out (an unstable MD run's
    survival time is measured: it is in)."""
    rows = measured(properties)
    if prop not in set(rows["property"]):
        raise AnalysisError(f"no measured property {prop!r}; measured: {', '.join(distinct(rows['property']))}")
    rows = rows[rows["property"] == prop]
    require_columns(scores, ["trial_id", "stage", "test_set", "status", metric], "the scores table")
    chosen = scores[(scores["test_set"] == test_set) & (scores["status"] == "ok")]
    if chosen.empty:
        raise AnalysisError(f"no 'ok' scores on test set {test_set!r}; test sets: "
                            f"{', '.join(distinct(scores['test_set']))}")
    keys = present(rows, ("study", "trial_id", "stage"))
    identity = [c for c in present(rows, (*IDENTITY, "optimizer_order", "study")) if c != "test_set"]
    merged = rows[[*identity, "property", "unit", "abs_error"]].rename(columns={"abs_error": "property_abs_error"})
    merged = merged.merge(chosen[[*keys, "test_set", "status", metric]], on=keys)
    if merged.empty:
        raise AnalysisError(f"no evaluated model with {prop!r} has scores on {test_set!r} (rows of different studies?)")
    return merged


def rmse_property_front(properties: pd.DataFrame, scores: pd.DataFrame, prop: str, *, test_set: str = "val",
                        metric: str = "force_rmse_mev_a") -> pd.DataFrame:
    """The models of `rmse_vs_property` that no other beats on both `metric` and the property's |error|."""
    return pareto_front(rmse_vs_property(properties, scores, prop, test_set=test_set, metric=metric),
                        [metric, "property_abs_error"])


def rmse_property_chart(properties: pd.DataFrame, scores: pd.DataFrame, prop: str, *, test_set: str = "val",
                        metric: str = "force_rmse_mev_a") -> alt.LayerChart:
    """`metric` on `test_set` (x) against the |error| of `prop` (y), a point per model, and their
    Pareto front: does a lower RMSE buy a better property?"""
    merged = rmse_vs_property(properties, scores, prop, test_set=test_set, metric=metric)
    label = f"|error| of {prop} ({merged['unit'].iloc[0]})"
    return frontier_chart(merged.rename(columns={"property_abs_error": label}), x=metric, y=label)


def ranking_agreement(properties: pd.DataFrame, scores: pd.DataFrame, prop: str, *, test_set: str = "val",
                      metric: str = "force_rmse_mev_a") -> float:
    """Spearman's rank correlation, over optimizers, of the seed-mean `metric` and the seed-mean
    |error| of `prop` over the models whose row is "ok" (as the table's ranks): 1 when the RMSE
    ranking and the property ranking agree, -1 when reversed, NaN with fewer than three optimizers.
    A property that is not ranked (a sanity check) raises."""
    chosen = properties[properties["property"] == prop]
    if not ranked_row(chosen).all():
        raise AnalysisError(f"{prop!r} is a sanity check, not ranked: choose a ranked property")
    merged = rmse_vs_property(properties[properties["status"] == "ok"], scores, prop, test_set=test_set, metric=metric)
    means = merged.groupby("optimizer")[[metric, "property_abs_error"]].mean()
    if len(means) < 3:
        return float("nan")
    return float(means[metric].rank().corr(means["property_abs_error"].rank()))
