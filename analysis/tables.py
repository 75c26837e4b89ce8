"""Tables over seeds: optimizer x condition summaries (the paper's Tables 1, 2, C1), relative
improvement over a baseline optimizer, and the gain from L-BFGS refinement (Table 3).

All functions are pure and use only rows with status 'ok'. Each averages over seeds, so every
group must hold one row per seed: when a configuration column (lr, stage, study, ...) varies
inside a group, they raise saying which, rather than silently averaging over it. Test sets carry
energies only (paths, scans, dimer curves), forces only, or both: a metric is summarised on the
test sets that hold it, and comparisons (improvement, L-BFGS gain) leave out the foundation's own
scores before fine-tuning (`REFERENCE_TEST_SETS`), which tables keep as the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.columns import (
    distinct,
    metrics_with_values,
    names,
    present,
    require_columns,
    require_numeric,
    rows_with,
    without_reference_sets,
)
from analysis.errors import AnalysisError

METRICS = ("energy_rmse_mev_atom", "force_rmse_mev_a")
# What a study's tables show, force first: force RMSE (meV/Å) on the sets with forces; energy RMSE
# (meV/atom) on the sets with energies; on paths and scans (`profile_tests`) the relative-energy RMSE
# and the barrier error (meV).
TABLE_METRICS = ("force_rmse_mev_a", "energy_rmse_mev_atom", "rel_energy_rmse_mev", "barrier_error_mev")
# The validation errors the curves record (name, unit), in the order a default is taken from.
VALIDATION_CURVES = {"val_force_rmse_mev_a": ("Validation force RMSE", "meV/Å"),
                     "val_energy_rmse_mev_atom": ("Validation energy RMSE", "meV/atom")}
# Errors with a sign (predicted - reference): the best is the one closest to zero, not the lowest.
SIGNED_METRICS = ("barrier_error_mev",)
CONFIGURATION = ("study", "stage", "optimizer", "lr", "system", "mode", "method", "protocol", "test_set")


def summary_table(df: pd.DataFrame, metric_cols: Sequence[str] = METRICS, by: Sequence[str] = ("optimizer",),
                  conditions: Sequence[str] = ("test_set",)) -> pd.DataFrame:
    """Mean and std (ddof=1) over seeds of each metric, one row per (`by`, `conditions`).

    Columns: `by`, `conditions`, then per metric `<m>_mean`, `<m>_std`, `<m>_n` (seeds) and
    `<m>_rank`, the rank of the mean among the first `by` column's values within its condition and
    each value of the other `by` columns (`compared_within`; 1 = lowest, or for a `SIGNED_METRICS`
    one the closest to zero; ties share the rank; NA where every mean of the group is equal, as for
    the replay set before fine-tuning), so `rank <= 2` marks the best two. A group whose test set
    lacks a metric (force RMSE of an energy-only set) has mean NaN and n 0 there. Put 'lr' in `by`
    for the learning-rate ablation: optimizers are then ranked within each lr, as the paper's Table
    C1 marks them.
    """
    metric_cols, by, conditions = names(metric_cols), names(by), names(conditions)
    keys = [*by, *conditions]
    if not keys or not metric_cols:
        raise AnalysisError("a summary needs at least one metric and one column to group by")
    ok = ok_rows(df)
    require_numeric(ok, metric_cols)
    check_one_row_per_seed(ok, keys)
    stats = ok.groupby(keys, sort=False, dropna=False)[metric_cols].agg(["mean", "std", "count"])
    stats.columns = [f"{metric}_{'n' if stat == 'count' else stat}" for metric, stat in stats.columns]
    stats = stats.reset_index()
    for metric in metric_cols:
        means = stats[f"{metric}_mean"]
        ranked = stats.assign(rank_by=means.abs() if metric in SIGNED_METRICS else means)
        stats[f"{metric}_rank"] = rank_within(ranked, "rank_by", [*conditions, *compared_within(stats, by)])
    return stats


def compared_within(summary: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """The `by` columns within each value of which `summary_table` ranks the first one's values:
    the others, but those nested in the first (each of their values occurs with one value of it,
    as the solver `adam+lora` occurs with method `lora` alone). Grouping by a nested column would
    leave one row per group, every one marked best; its rows are compared with each other instead."""
    first, *others = names(by)
    return [column for column in others
            if (summary.groupby(column, dropna=False)[first].nunique(dropna=False) > 1).any()]


def table_metrics(scores: pd.DataFrame) -> list[str]:
    """Those of `TABLE_METRICS` that some 'ok' row of `scores` holds, force first."""
    return metrics_with_values(ok_rows(scores), TABLE_METRICS)


def improvement_vs(df: pd.DataFrame, baseline: str = "adam", metric: str = "force_rmse_mev_a",
                   conditions: Sequence[str] = ("test_set",)) -> pd.DataFrame:
    """Relative improvement (%) of each optimizer's seed-mean `metric` over `baseline`'s, per condition.

    `improvement_pct` = 100 * (baseline - mean) / baseline: positive where the optimizer has the
    lower error, negative where it is worse. The baseline's own rows are left out.
    """
    conditions = names(conditions)
    means = summary_table(rows_with(without_reference_sets(df), metric), [metric], by=("optimizer",),
                          conditions=conditions)
    optimizers = distinct(means["optimizer"])
    if baseline not in optimizers or len(optimizers) < 2:
        raise AnalysisError(f"need 'ok' rows of the baseline optimizer {baseline!r} and of another; optimizers: "
                            f"{', '.join(optimizers)}")
    means = means.rename(columns={f"{metric}_mean": "mean"})[["optimizer", *conditions, "mean"]]
    base = means[means["optimizer"] == baseline].drop(columns="optimizer").rename(columns={"mean": "baseline_mean"})
    table = _merge(means[means["optimizer"] != baseline], base, conditions)
    table["improvement_pct"] = 100 * (table["baseline_mean"] - table["mean"]) / table["baseline_mean"]
    return table.assign(metric=metric, baseline=baseline)


def lbfgs_gain(df: pd.DataFrame, metric: str = "force_rmse_mev_a") -> pd.DataFrame:
    """First-order result vs the same trial after L-BFGS refinement, per optimizer, system, mode and test set.

    Columns: `base_mean` (seed mean of the first-order parents that were refined), `refined_mean`,
    `delta` = refined - base, `change_pct` = 100 * delta / base, `improved` (refinement lowered
    the error) and `n` (pairs). System and mode are keys where the data has them.
    """
    pairs = lbfgs_pairs(df, metric)
    keys = ["optimizer", *present(pairs, ("system", "mode")), "test_set"]
    check_one_row_per_seed(pairs, keys)
    gain = pairs.groupby(keys, sort=False, dropna=False).agg(
        base_mean=("base", "mean"), refined_mean=("refined", "mean"), n=("refined", "count")).reset_index()
    gain["delta"] = gain["refined_mean"] - gain["base_mean"]
    gain["change_pct"] = 100 * gain["delta"] / gain["base_mean"]
    gain["improved"] = gain["delta"] < 0
    return gain.assign(metric=metric)


def lbfgs_pairs(df: pd.DataFrame, metric: str = "force_rmse_mev_a") -> pd.DataFrame:
    """One row per (L-BFGS trial, test set): its `metric` as `refined` beside its parent's as `base`.

    The parent is the first-order trial whose trial_id is the L-BFGS row's parent_trial_id (same study).
    Only test sets that hold `metric` count; the foundation's scores before fine-tuning do not.
    """
    require_columns(df, ["parent_trial_id"], "the scores table")
    ok = rows_with(without_reference_sets(ok_rows(df)), metric)
    first, refined = stage_rows(ok, "first_order"), stage_rows(ok, "lbfgs")
    parents = first[["study", "trial_id", "test_set", metric]].rename(
        columns={"trial_id": "parent_trial_id", metric: "base"})
    pairs = refined.rename(columns={metric: "refined"}).merge(parents, on=["study", "parent_trial_id", "test_set"])
    if pairs.empty:
        raise AnalysisError("no lbfgs row's parent_trial_id matches an 'ok' first_order trial_id of the same study "
                            "and test set")
    return pairs


STOPPED = "early_stopped"  # a trial an adaptive study stopped (study.adaptive): neither finished nor failed


def failed_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of trials that failed: neither 'ok' nor stopped by an adaptive study."""
    require_columns(df, ["status"])
    return df[~df["status"].isin(("ok", STOPPED))]


def stopped_cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell an adaptive study stopped (context, stage, optimizer, lr, protocol where
    present): its stopped `seeds` and `stopped_at_epoch`, the furthest epoch they reached (NaN for
    rows written before the column existed). Empty where nothing was stopped."""
    require_columns(df, ["status", "trial_id", "optimizer", "lr", "seed"])
    trials = df[df["status"] == STOPPED].drop_duplicates(present(df, ("study", "trial_id", "stage")))
    if "stopped_at_epoch" not in trials:
        trials = trials.assign(stopped_at_epoch=np.nan)
    keys = present(trials, ("study", "system", "mode", "stage", "optimizer", "lr", "protocol"))
    return trials.groupby(keys, sort=False, dropna=False).agg(
        seeds=("seed", "nunique"), stopped_at_epoch=("stopped_at_epoch", "max")).reset_index()


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with status 'ok'; raises when there are none."""
    require_columns(df, ["status"])
    ok = df[df["status"] == "ok"]
    if ok.empty:
        raise AnalysisError(f"no rows with status 'ok'; statuses: {', '.join(map(str, distinct(df['status'])))}")
    return ok


def stage_rows(df: pd.DataFrame, stage: str) -> pd.DataFrame:
    """Rows of `stage`; raises naming the stages present when there are none."""
    require_columns(df, ["stage"])
    rows = df[df["stage"] == stage]
    if rows.empty:
        raise AnalysisError(f"no 'ok' {stage} rows; stages present: {', '.join(map(str, distinct(df['stage'])))}")
    return rows


def check_one_row_per_seed(df: pd.DataFrame, keys: Sequence[str]) -> None:
    """Raise when a (`keys`, seed) group has several rows, naming the columns that vary within groups."""
    require_columns(df, [*keys, "seed"])
    if not keys or (df.groupby([*keys, "seed"], dropna=False).size() <= 1).all():
        return
    grouped = df.groupby(list(keys), dropna=False)
    varying = [c for c in present(df, CONFIGURATION)
               if c not in keys and (grouped[c].nunique(dropna=False) > 1).any()]
    hint = (f"{', '.join(varying)} varies within a group: filter to one value or group by it" if varying
            else "identical configurations repeat: was a study loaded twice?")
    raise AnalysisError(f"several rows per seed for some ({', '.join(keys)}): {hint}")


# Relative spread below which a group's values count as equal: a float32 model's rounding, as the
# foundation's scores before fine-tuning show when trial processes compute them again.
EQUAL_RTOL = 1e-6


def rank_within(table: pd.DataFrame, column: str, conditions: Sequence[str]) -> pd.Series:
    """Rank of `column` within each `conditions` group (1 = lowest, ties share the lowest rank); NA
    in a group of several rows whose values are all equal to `EQUAL_RTOL` (nothing there is better
    than the rest)."""
    groups = table.groupby(list(conditions), sort=False, dropna=False)[column] if conditions else None
    ranks = (groups.rank(method="min") if groups is not None else table[column].rank(method="min")).astype("Int64")
    spread = groups.transform(_differ) if groups is not None else pd.Series(_differ(table[column]), index=table.index)
    return ranks.where(spread.astype(bool))


def _differ(values: pd.Series) -> bool:
    """One value alone, or values that are not all equal to `EQUAL_RTOL`."""
    known = values.dropna()
    return len(values) == 1 or (len(known) > 0 and known.max() - known.min() > EQUAL_RTOL * known.abs().max())


def curve_summary(curves: pd.DataFrame, y: str = "val_force_rmse_mev_a") -> pd.DataFrame:
    """One row per (trial, stage) of a curves table: its last step, `y` there (`final_<y>`) and
    the lowest `y` seen (`best_<y>`)."""
    require_numeric(curves, ["step", y])
    keys = present(curves, ("study", "trial_id", "stage"))
    ordered = curves.dropna(subset=[y]).sort_values([*keys, "step"])
    grouped = ordered.groupby(keys, sort=False)
    identity = present(curves, ("study", "trial_id", "stage", "optimizer", "lr", "seed"))
    last = grouped.tail(1)[[*identity, "step", y]].rename(columns={y: f"final_{y}"})
    return last.merge(grouped[y].min().rename(f"best_{y}").reset_index(), on=keys)


def validation_curve(curves: pd.DataFrame) -> str:
    """The first of `VALIDATION_CURVES` the curves hold: force RMSE, or energy RMSE where the
    validation set has no forces."""
    if held := metrics_with_values(curves, VALIDATION_CURVES):
        return held[0]
    raise AnalysisError(f"the curves hold no {' or '.join(VALIDATION_CURVES)}: choose a column with --y")


def with_total_wall_time(scores: pd.DataFrame) -> pd.DataFrame:
    """`scores` plus `total_wall_time_s`: a row's own wall time, plus for an L-BFGS row its parent's
    first-order wall time (NaN where the parent is not in `scores`), to put both stages on one cost axis."""
    require_numeric(scores, ["wall_time_s"])
    if "parent_trial_id" not in scores.columns:
        return scores.assign(total_wall_time_s=scores["wall_time_s"])
    trials = scores.drop_duplicates(["study", "trial_id"]).set_index(["study", "trial_id"])["wall_time_s"]
    parents = pd.MultiIndex.from_arrays([scores["study"], scores["parent_trial_id"]])
    parent_wall = trials.reindex(parents).to_numpy()
    has_parent = scores["parent_trial_id"].notna().to_numpy()
    return scores.assign(total_wall_time_s=scores["wall_time_s"].to_numpy() + np.where(has_parent, parent_wall, 0.0))


def _merge(left: pd.DataFrame, right: pd.DataFrame, on: list[str]) -> pd.DataFrame:
    return left.merge(right, on=on, how="left") if on else left.merge(right, how="cross")
