"""Relative-energy profiles of paths and scans: predicted against reference, per trial.

A test set that is a path or a scan (`profile_tests` in the run's config) is scored on relative
energies: each structure's energy minus that of the structure with the lowest reference energy,
in meV. Its score rows carry both profiles (`profile_predicted_mev`, `profile_reference_mev`, as
JSON lists in file order) beside `rel_energy_rmse_mev`, `rel_energy_max_error_mev` and
`barrier_error_mev`. Pure functions: `DataFrame -> DataFrame` and `DataFrame -> alt.Chart`.
"""

from __future__ import annotations

import json

import altair as alt
import pandas as pd

from analysis.charts import HEIGHT, IDENTITY, WIDTH, _color, ordered_optimizers, title
from analysis.columns import present, require_single
from analysis.errors import AnalysisError
from analysis.tables import ok_rows

PROFILE_COLUMNS = ("profile_predicted_mev", "profile_reference_mev")
PROFILE_METRICS = ("rel_energy_rmse_mev", "rel_energy_max_error_mev", "barrier_error_mev")


def energy_profiles(scores: pd.DataFrame) -> pd.DataFrame:
    """Long rows, one per (trial, stage, structure): `point` (index along the path), `reference_mev`
    and `predicted_mev`, from the 'ok' rows of one test set that has profiles."""
    rows = ok_rows(scores)
    require_single(rows, "test_set", "choose one with --test-set")
    missing = [c for c in PROFILE_COLUMNS if c not in rows or rows[c].isna().all()]
    if missing:
        raise AnalysisError(f"test set {rows['test_set'].iloc[0]!r} has no energy profiles (it is not one of the "
                            "run's profile_tests, or the study predates them)")
    identity = present(rows, (*IDENTITY, "optimizer_order"))
    points = []
    for _, row in rows.dropna(subset=list(PROFILE_COLUMNS)).iterrows():
        predicted, reference = (json.loads(row[c]) if isinstance(row[c], str) else list(row[c]) for c in PROFILE_COLUMNS)
        points += [{**{k: row[k] for k in identity}, "point": i, "reference_mev": r, "predicted_mev": p}
                   for i, (p, r) in enumerate(zip(predicted, reference))]
    return pd.DataFrame(points)


def energy_profile_chart(profiles: pd.DataFrame) -> alt.TopLevelMixin:
    """The reference profile (black) and each optimizer's predicted one, the mean over seeds (and lrs
    in separate panels where there are several)."""
    means = profiles.groupby(present(profiles, ("optimizer", "optimizer_order", "lr", "point")), sort=False,
                             dropna=False)["predicted_mev"].mean().reset_index()
    reference = profiles.groupby("point", sort=True)["reference_mev"].first().reset_index()
    y = alt.Y("energy:Q", title="Relative energy (meV)")
    x = alt.X("point:Q", title="Point along the path or scan")
    lines = alt.Chart(means.rename(columns={"predicted_mev": "energy"})).mark_line(point=True).encode(
        x=x, y=y, color=_color(means), tooltip=["optimizer", "lr", "point", alt.Tooltip("energy:Q", format=".1f")])
    ref = alt.Chart(reference.rename(columns={"reference_mev": "energy"})).mark_line(
        color="black", strokeDash=[5, 3], point=alt.OverlayMarkDef(color="black")).encode(x=x, y=y)
    chart = (ref + lines).properties(width=WIDTH, height=HEIGHT,
                                     title=f"{profiles['test_set'].iloc[0]}: predicted vs reference (dashed)")
    return chart if means["lr"].nunique() < 2 else chart.facet(column=alt.Column("lr:O", title=title("lr")))


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
