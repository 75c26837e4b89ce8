"""Relative-energy profiles of paths and scans: predicted against reference, per curve and trial.

A test set that is a path or a scan (`profile_tests` in the run's config) is scored on relative
energies. Its structures form one curve or several (dimer curves of several element pairs, say):
each structure's energy minus that of the structure with the lowest reference energy of its own
curve, in meV. Its score rows carry the profiles as JSON lists in file order
(`profile_predicted_mev`, `profile_reference_mev`, and `profile_curve` naming each point's curve)
beside `rel_energy_rmse_mev` (over all points of all curves), `rel_energy_max_error_mev` (the largest
over all points) and `barrier_error_mev` (predicted - reference, of the curve whose barrier error is
largest in magnitude). Rows written before curves were named lack `profile_curve`: their points are
one curve named after the test set. Pure functions: `DataFrame -> DataFrame` and `DataFrame -> alt.Chart`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence

import altair as alt
import pandas as pd

from analysis.charts import FACET_WIDTH, HEIGHT, IDENTITY, WIDTH, _color, ordered_optimizers, title
from analysis.columns import distinct, present, require_single
from analysis.errors import AnalysisError
from analysis.stats import at_chosen_lr, chosen_lrs
from analysis.tables import ok_rows

PROFILE_COLUMNS = ("profile_predicted_mev", "profile_reference_mev")
CURVE_COLUMN = "profile_curve"
PROFILE_METRICS = ("rel_energy_rmse_mev", "rel_energy_max_error_mev", "barrier_error_mev")


def profile_test_sets(scores: pd.DataFrame) -> list[str]:
    """The test sets of `scores` whose rows carry energy profiles, in order of appearance."""
    if any(column not in scores for column in PROFILE_COLUMNS):
        return []
    return distinct(scores.dropna(subset=list(PROFILE_COLUMNS))["test_set"])


def profile_test_set(scores: pd.DataFrame, named: Sequence[str] | None = None) -> str:
    """The test set whose profiles to show: the one `named`, else the study's only profile test set;
    raises where `named` has several, or the study has none or several."""
    if named:
        if len(named) > 1:
            raise AnalysisError(f"one test set at a time; got {', '.join(named)}")
        return named[0]
    found = profile_test_sets(scores)
    if not found:
        raise AnalysisError("no test set has energy profiles (a path or scan among the run's profile_tests); "
                            f"test sets: {', '.join(map(str, distinct(scores['test_set'])))}")
    if len(found) > 1:
        raise AnalysisError(f"several test sets have energy profiles ({', '.join(found)}): choose one with --test-set")
    return found[0]


def energy_profiles(scores: pd.DataFrame) -> pd.DataFrame:
    """Long rows, one per (trial, structure): `curve`, `point` (index along its curve, from 0),
    `reference_mev` and `predicted_mev` (meV, relative to the curve's lowest reference energy), from
    the 'ok' rows of one test set and stage that has profiles."""
    rows = ok_rows(scores)
    require_single(rows, "test_set", "choose one with --test-set")
    require_single(rows, "stage", "choose one with --stage")
    if not profile_test_sets(rows):
        raise AnalysisError(f"test set {rows['test_set'].iloc[0]!r} has no energy profiles (it is not one of the "
                            "run's profile_tests, or the study predates them)")
    identity = present(rows, (*IDENTITY, "optimizer_order"))
    return pd.DataFrame([point for _, row in rows.dropna(subset=list(PROFILE_COLUMNS)).iterrows()
                         for point in _points(row, identity)])


def _points(row: pd.Series, identity: list[str]) -> list[dict]:
    predicted, reference = (_as_list(row[column]) for column in PROFILE_COLUMNS)
    curves = _as_list(row.get(CURVE_COLUMN)) or [row["test_set"]] * len(reference)
    if not len(predicted) == len(reference) == len(curves):
        raise AnalysisError(f"trial {row['trial_id']} on {row['test_set']}: profiles of {len(predicted)} predicted, "
                            f"{len(reference)} reference and {len(curves)} curve entries")
    along = Counter()
    points = []
    for p, r, curve in zip(predicted, reference, curves):
        points.append({**{k: row[k] for k in identity}, "curve": curve, "point": along[curve], "reference_mev": r,
                       "predicted_mev": p})
        along[curve] += 1
    return points


def _as_list(value) -> list | None:
    """A profile cell as a list (written as JSON text); None where it is null or absent."""
    if isinstance(value, str):
        return json.loads(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return list(value)


def at_chosen_lrs(profiles: pd.DataFrame, scores: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """`profiles` at each optimizer's learning rate chosen on the validation set (`chosen_lrs` of
    `scores`: data other than the profile's own), with a line saying which; unchanged, with '', where
    every optimizer has a single lr."""
    if (profiles.groupby("optimizer")["lr"].nunique() <= 1).all():
        return profiles, ""
    chosen = chosen_lrs(scores)
    lrs = dict(zip(chosen["optimizer"], chosen["lr"]))
    note = (f"each optimizer at its lr chosen on validation ({title(chosen['selection_metric'].iloc[0])}): "
            + ", ".join(f"{optimizer} {lrs[optimizer]:g}" for optimizer in ordered_optimizers(profiles)
                        if optimizer in lrs))
    return at_chosen_lr(profiles, chosen), note


def energy_profile_chart(profiles: pd.DataFrame, subtitle: str = "") -> alt.TopLevelMixin:
    """Each curve's reference profile (dashed black) and each optimizer's predicted one, the mean over
    seeds: one panel per curve (rows) and, where an optimizer has several learning rates, per lr
    (columns). One DataFrame at the top level, each layer filtering its part of it."""
    data, curves, by_lr = _chart_data(profiles)
    x = alt.X("point:O", title="Point along the curve", axis=alt.Axis(labelAngle=0))
    y = alt.Y("energy:Q", title="Relative energy (meV)")
    reference = alt.Chart().mark_line(color="black", strokeDash=[5, 3], point=alt.OverlayMarkDef(color="black")).encode(
        x=x, y=y, detail="curve:N", tooltip=["curve", "point", alt.Tooltip("energy:Q", format=".2f")]
    ).transform_filter(alt.datum.kind == "reference")
    predicted = alt.Chart().mark_line(point=True).encode(
        x=x, y=y, color=_color(data), detail="curve:N",
        tooltip=["optimizer", "lr", "curve", "point", alt.Tooltip("energy:Q", format=".2f")]
    ).transform_filter(alt.datum.kind == "predicted")
    heading = alt.TitleParams(f"{profiles['test_set'].iloc[0]}: predicted (mean over seeds) vs reference (dashed)",
                              subtitle=subtitle or alt.Undefined)
    facets = {**({"row": alt.Row("curve:N", sort=curves, title=None)} if len(curves) > 1 else {}),
              **({"column": alt.Column("lr:O", sort="descending", title=title("lr"))} if by_lr else {})}
    layered = alt.layer(reference, predicted, data=data)
    if not facets:
        return layered.properties(width=WIDTH, height=HEIGHT, title=heading)
    chart = layered.properties(width=FACET_WIDTH, height=HEIGHT).facet(**facets, title=heading)
    return chart.resolve_scale(x="independent", y="independent") if len(curves) > 1 else chart


def _chart_data(profiles: pd.DataFrame) -> tuple[pd.DataFrame, list, bool]:
    """Seed means and references in one frame (`kind` tells them apart; the reference repeated per lr
    where panels are per lr), the curves in order, and whether panels are per lr."""
    keys = present(profiles, ("optimizer", "optimizer_order", "lr", "curve", "point"))
    means = profiles.groupby(keys, sort=False, dropna=False)["predicted_mev"].mean().reset_index()
    reference = profiles.groupby(["curve", "point"], sort=False)["reference_mev"].first().reset_index()
    by_lr = bool((means.groupby("optimizer")["lr"].nunique() > 1).any())
    references = pd.concat([reference.assign(lr=lr) for lr in distinct(means["lr"])]) if by_lr else reference
    data = pd.concat([means.rename(columns={"predicted_mev": "energy"}).assign(kind="predicted"),
                      references.rename(columns={"reference_mev": "energy"}).assign(kind="reference")],
                     ignore_index=True)
    return data, distinct(reference["curve"]), by_lr


def profile_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer (and lr): mean over seeds of the relative-energy errors of one test set."""
    rows = ok_rows(scores)
    require_single(rows, "test_set", "choose one with --test-set")
    metrics = [m for m in PROFILE_METRICS if m in rows]
    if not metrics:
        raise AnalysisError(f"test set {rows['test_set'].iloc[0]!r} has no relative-energy scores")
    keys = present(rows, ("optimizer", "lr"))
    summary = rows.groupby(keys, sort=False)[metrics].mean().reset_index()
    order = ordered_optimizers(rows)
    return summary.sort_values(keys, key=lambda c: c.map(order.index) if c.name == "optimizer" else c, kind="stable")


def study_profile_charts(scores: pd.DataFrame) -> list[tuple[alt.TopLevelMixin, str]]:
    """(chart, caption) per profile test set of one stage's `scores`: each optimizer at its lr chosen
    on validation, one panel per curve."""
    charts = []
    for test_set in profile_test_sets(scores):
        profiles, choice = at_chosen_lrs(energy_profiles(scores[scores["test_set"] == test_set]), scores)
        caption = (f"Relative energies along {test_set} ({curve_lengths(profiles)}), predicted (mean over seeds) "
                   f"and reference (dashed){'; ' + choice if choice else ''}.")
        charts.append((energy_profile_chart(profiles, subtitle=choice), caption))
    return charts


def curve_lengths(profiles: pd.DataFrame) -> str:
    """'H-H (4 points), C-C (3 points)': the curves of `energy_profiles` output, in order."""
    lengths = profiles.groupby("curve", sort=False)["point"].max() + 1
    return ", ".join(f"{curve} ({n} points)" for curve, n in lengths.items())
