"""Verdicts with confidence over seeds: paired comparisons against a baseline optimizer, how many
seeds would separate the best two, rank stability across seeds, time-to-target on the validation
curves, and performance profiles across problems (AlgoPerf's rho(tau) and its area score).

All functions are pure (`DataFrame -> DataFrame`) and use rows with status 'ok'. Metrics are errors:
lower is better. Optimizers are compared at the same learning rate, on the same test set and, where
the data have several, the same study, system, mode and stage; seeds pair runs (same seed, same data
order and initial head), so differences are taken seed by seed before averaging.

Statistics come from scipy: `scipy.stats.bootstrap` (percentile intervals), `scipy.stats.
permutation_test` (the exact sign-flip test), `scipy.stats.kendalltau` and `scipy.stats.norm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.columns import distinct, present, require_columns, require_numeric
from analysis.errors import AnalysisError
from analysis.tables import check_one_row_per_seed, curve_summary, ok_rows, summary_table

CONFIDENCE = 0.95
N_RESAMPLES = 9999  # bootstrap resamples; also the cap on sign-flip permutations (exact up to 13 seeds)
SEED = 0  # the bootstrap's random generator seed: the same data give the same interval
POWER = 0.8
# Kendall's tau = 1 - 2 x (share of optimizer pairs whose order flips between two seeds): 0.7 lets
# 15% of the pairs flip. With 3 optimizers a single flip gives tau = 1/3, already below it.
STABLE_TAU = 0.7
TARGET_FACTOR = 1.1
DEFAULT_TAUS = np.geomspace(1.0, 2.0, 101)
CONTEXT = ("study", "system", "mode", "stage")
VERDICTS = ("better", "worse", "no clear difference")


def paired_comparison(scores: pd.DataFrame, baseline: str = "adam", metric: str = "force_rmse_mev_a", *,
                      confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                      seed: int = SEED) -> pd.DataFrame:
    """Each optimizer against `baseline` over paired seeds, one row per (optimizer, lr, test set).

    `difference` is the mean over paired seeds of (optimizer - baseline) `metric`, negative where the
    optimizer has the lower error; `difference_std` its std (ddof=1). `ci_low`, `ci_high`: the
    `confidence` percentile bootstrap interval of that mean (`n_resamples` resamples, generator
    seeded with `seed`). `p_value`: the exact two-sided sign-flip permutation test of a zero mean
    difference; it cannot go below `smallest_p(n)` = 2 / 2^n, 0.25 for 3 seeds, so it can never
    reject at 5% with fewer than 6 seeds. The verdict therefore rests on the interval: `better`
    where it lies below zero, `worse` above, else `no clear difference` (also for a single pair).
    With 3 seeds the percentile interval spans the smallest to the largest paired difference, so
    `better` means every seed improved on the baseline: a consistent direction, weak evidence.
    A context column (study, system, mode, stage) that varies is kept as a key.
    """
    pairs = paired_differences(scores, baseline, metric)
    keys = [c for c in pairs.columns if c not in ("seed", "value", "baseline_value", "difference")]  # optimizer first
    rows = [{**dict(zip(keys, key)), **difference_stats(group, confidence, n_resamples, seed)}
            for key, group in pairs.groupby(keys, sort=False, dropna=False)]
    table = pd.DataFrame(rows)
    return table.assign(verdict=verdicts(table["ci_low"], table["ci_high"]), metric=metric, baseline=baseline)


def paired_differences(scores: pd.DataFrame, baseline: str, metric: str) -> pd.DataFrame:
    """One row per (other optimizer, condition, seed) that the baseline also has: `value`,
    `baseline_value` and `difference` = value - baseline_value. Conditions: see `conditions_of`."""
    ok = scored_rows(scores, metric)
    conditions = conditions_of(ok)
    check_one_row_per_seed(ok, ["optimizer", *conditions])
    optimizers = distinct(ok["optimizer"])
    if baseline not in optimizers or len(optimizers) < 2:
        raise AnalysisError(f"need 'ok' rows of the baseline optimizer {baseline!r} and of another; optimizers: "
                            f"{', '.join(optimizers)}")
    rows = ok[["optimizer", *conditions, "seed", metric]].rename(columns={metric: "value"})
    base = rows[rows["optimizer"] == baseline].drop(columns="optimizer").rename(columns={"value": "baseline_value"})
    pairs = rows[rows["optimizer"] != baseline].merge(base, on=[*conditions, "seed"])
    if pairs.empty:
        raise AnalysisError(f"no run pairs with one of {baseline!r} (same {', '.join(conditions)} and seed)")
    return pairs.assign(difference=pairs["value"] - pairs["baseline_value"])


def difference_stats(pairs: pd.DataFrame, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                     seed: int = SEED) -> dict[str, float]:
    """Seeds, means, the mean paired difference with its std, bootstrap interval and sign-flip p of
    `paired_differences` rows (one group)."""
    difference = pairs["difference"].to_numpy(dtype=float)
    low, high = bootstrap_interval(difference, confidence, n_resamples, seed)
    return {"n": len(difference), "mean": pairs["value"].mean(), "baseline_mean": pairs["baseline_value"].mean(),
            "difference": difference.mean(), "difference_std": np.std(difference, ddof=1) if len(difference) > 1
            else np.nan, "ci_low": low, "ci_high": high, "p_value": sign_flip_p(difference, n_resamples, seed)}


def bootstrap_interval(values: np.ndarray, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                       seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (NaN, NaN for fewer than two)."""
    if len(values) < 2:
        return np.nan, np.nan
    result = stats.bootstrap((values,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                             method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def sign_flip_p(differences: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> float:
    """Two-sided p of the sign-flip permutation test of a zero mean paired difference: exact (all
    2^n sign patterns) while 2^n <= `n_resamples`, else that many random ones. NaN below two."""
    if len(differences) < 2:
        return np.nan
    result = stats.permutation_test((differences,), _mean, permutation_type="samples", vectorized=True,
                                    n_resamples=n_resamples, rng=np.random.default_rng(seed))
    return float(result.pvalue)


def smallest_p(n: int) -> float:
    """The smallest two-sided p the exact sign-flip test can give with `n` paired seeds: 2 / 2^n."""
    return min(1.0, 2.0 / 2 ** n)


def interval_is_range(n: int, confidence: float = CONFIDENCE) -> bool:
    """Whether the percentile bootstrap interval of the mean of `n` values is their min-max range:
    all n draws on the smallest value, probability (1/n)^n, is then more likely than the interval's
    lower tail (1 - confidence) / 2. True for n <= 3 at 95%."""
    return n >= 2 and (1 / n) ** n > (1 - confidence) / 2


def verdicts(ci_low: pd.Series, ci_high: pd.Series) -> pd.Series:
    """`better` where the interval of (optimizer - baseline) error is below zero, `worse` above,
    `no clear difference` where it holds zero or is undefined."""
    better, worse, unclear = VERDICTS
    return pd.Series(np.select([ci_high < 0, ci_low > 0], [better, worse], unclear), index=ci_low.index)


def seeds_needed(scores: pd.DataFrame, metric: str = "force_rmse_mev_a", *, confidence: float = CONFIDENCE,
                 power: float = POWER, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> pd.DataFrame:
    """Per condition (lr, test set, ...), the best two optimizers by seed mean, the paired interval of
    their difference (`second - best`, as `paired_comparison` with the best as baseline) and whether
    it `separated` them (interval above zero). The paired interval is used rather than the overlap
    of the two optimizers' own intervals, which ignores what a seed shares between them.

    `seeds_needed`: the normal-approximation size of a two-sided paired test at level 1 -
    `confidence` with power `power`, n = ceil(((z_(1-alpha/2) + z_power) * s / |d|)^2), d and s the
    observed mean and std of the paired differences (at least 2; inf where d = 0). It is optimistic
    for small n, where a t test needs one or two seeds more. `extra_seeds` = seeds_needed - n, >= 0.
    """
    ok = scored_rows(scores, metric)
    rows = [_best_two(block, metric, confidence, n_resamples, seed)
            for _, block in ok.groupby(conditions_of(ok), sort=False, dropna=False)
            if block["optimizer"].nunique() >= 2]
    if not rows:
        raise AnalysisError("seeds needed: no lr and test set has 'ok' rows of two optimizers")
    table = pd.concat(rows, ignore_index=True)
    needed = normal_seeds(table["difference"], table["difference_std"], confidence, power)
    return table.assign(separated=table["ci_low"] > 0, seeds_needed=needed,
                        extra_seeds=np.maximum(needed - table["n"], 0))


def _best_two(block: pd.DataFrame, metric: str, confidence: float, n_resamples: int, seed: int) -> pd.DataFrame:
    best, second = block.groupby("optimizer")[metric].mean().nsmallest(2).index
    pair = paired_comparison(block[block["optimizer"].isin([best, second])], best, metric, confidence=confidence,
                             n_resamples=n_resamples, seed=seed)
    renamed = pair.rename(columns={"optimizer": "second", "baseline": "best", "mean": "second_mean",
                                   "baseline_mean": "best_mean"})
    columns = ["best", "second", "n", "best_mean", "second_mean", "difference", "difference_std", "ci_low", "ci_high"]
    conditions = [c for c in renamed.columns if c not in (*columns, "p_value", "verdict", "metric")]
    return renamed[[*conditions, *columns]]


def normal_seeds(difference: pd.Series, std: pd.Series, confidence: float = CONFIDENCE,
                 power: float = POWER) -> pd.Series:
    """Paired seeds a two-sided normal-approximation test needs to detect `difference` with `power`:
    ceil(((z_(1-alpha/2) + z_power) * std / |difference|)^2), at least 2; NaN where std is."""
    z = stats.norm.ppf(1 - (1 - confidence) / 2) + stats.norm.ppf(power)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.ceil((z * std / difference.abs()) ** 2)
    return np.maximum(n.where(difference != 0, np.inf).where(std.notna()), 2)


def seed_ranks(scores: pd.DataFrame, metric: str = "force_rmse_mev_a") -> pd.DataFrame:
    """Each optimizer's rank (1 = lowest `metric`, ties share the lowest) within each (condition,
    seed): columns `conditions_of`, seed, optimizer, `value` and `rank`."""
    ok = scored_rows(scores, metric)
    conditions = conditions_of(ok)
    check_one_row_per_seed(ok, ["optimizer", *conditions])
    rows = ok[[*conditions, "seed", "optimizer", metric]].rename(columns={metric: "value"})
    rank = rows.groupby([*conditions, "seed"], sort=False, dropna=False)["value"].rank(method="min")
    return rows.assign(rank=rank.astype(int)).reset_index(drop=True)


def rank_stability(scores: pd.DataFrame, metric: str = "force_rmse_mev_a",
                   threshold: float = STABLE_TAU) -> pd.DataFrame:
    """Kendall's tau (scipy.stats.kendalltau, tau-b) between two seeds' orderings of the optimizers by
    `metric`, per condition (lr, test set, ...) and pair of seeds, over the optimizers both seeds
    scored (`n`); `stable`: tau >= `threshold` (STABLE_TAU = 0.7: at most 15% of pairs flip)."""
    ranks = seed_ranks(scores, metric)
    conditions = [c for c in ranks.columns if c not in ("seed", "optimizer", "value", "rank")]
    rows = []
    for key, block in ranks.groupby(conditions, sort=False, dropna=False):
        wide = block.pivot(index="optimizer", columns="seed", values="value")
        for a, b in combinations(wide.columns, 2):
            both = wide[[a, b]].dropna()
            tau = stats.kendalltau(both[a], both[b]).statistic if len(both) >= 2 else np.nan
            rows.append({**dict(zip(conditions, key)), "seed_a": a, "seed_b": b, "n": len(both), "tau": tau})
    if not rows:
        raise AnalysisError("rank stability needs at least two seeds of the same lr and test set")
    taus = pd.DataFrame(rows)
    return taus.assign(stable=taus["tau"] >= threshold)


def ranking_is_stable(taus: pd.DataFrame, threshold: float = STABLE_TAU) -> bool:
    """Whether the mean Kendall tau of `rank_stability` output reaches `threshold`."""
    return bool(taus["tau"].mean() >= threshold)


def rank_summary(ranks: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer (and lr, context) over its (seed, test set) rankings of `seed_ranks` output: mean,
    best and worst rank, and `holds`, the share of rankings at its most frequent rank."""
    keys = [c for c in ranks.columns if c not in ("seed", "test_set", "optimizer", "value", "rank")]
    grouped = ranks.groupby(["optimizer", *keys], sort=False, dropna=False)["rank"]
    summary = grouped.agg(mean_rank="mean", best_rank="min", worst_rank="max", rankings="count")
    summary["holds"] = grouped.agg(lambda rank: rank.value_counts(normalize=True).iloc[0])
    return summary.reset_index().sort_values([*keys, "mean_rank"], kind="stable", ignore_index=True)


def time_to_target(curves: pd.DataFrame, target: float | None = None,
                   y: str = "val_force_rmse_mev_a") -> pd.DataFrame:
    """Per trial and stage, the first curve point at which `y` reaches `target` (<=).

    `target` in `y`'s units; by default TARGET_FACTOR (1.1) times the best final `y` of any trial of
    the same study and stage. `step_to_target` is the curves' own step (an epoch of first-order
    training, fractional with `val_every_steps`; an iteration of L-BFGS): the resolution is the
    curves' cadence. `wall_s_to_target` is the curve's `wall_time_s` there, seconds since the trial
    started (setup and a first compile included); `train_s_to_target` its `train_time_s`, training
    alone (no compile, no validation), where the curves record it (NaN for older studies), and
    `steps_to_target` the optimizer steps. Never reached: inf.
    """
    require_numeric(curves, ["step", "wall_time_s", y])
    require_columns(curves, ["study", "trial_id"], "the curves")
    keys = present(curves, ("study", "trial_id", "stage"))
    final = f"final_{y}"
    trials = curve_summary(curves, y).drop(columns=["step", f"best_{y}"])
    by = present(trials, ("study", "stage"))
    trials["target"] = TARGET_FACTOR * trials.groupby(by)[final].transform("min") if target is None else target
    points = curves.dropna(subset=[y]).merge(trials[[*keys, "target"]], on=keys)
    first = points[points[y] <= points["target"]].sort_values("step").groupby(keys, sort=False).head(1)
    renames = {"step": "step_to_target", "wall_time_s": "wall_s_to_target", "train_time_s": "train_s_to_target",
               "steps": "steps_to_target"}
    first = first.reindex(columns=[*keys, *renames]).rename(columns=renames)
    table = trials.merge(first, on=keys, how="left")
    table["reached"] = table["step_to_target"].notna()
    columns = list(renames.values())
    table[columns] = table[columns].astype(float)
    table.loc[~table["reached"], columns] = np.inf
    return table


def target_summary(times: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer and lr (and stage, study where several) of `time_to_target` output: trials,
    how many `reached` the target, and the median step and wall seconds (inf when most never did)."""
    keys = [c for c in ("study", "stage") if c in times and times[c].nunique() > 1]
    grouped = times.groupby(["optimizer", "lr", *keys], sort=False, dropna=False)
    return grouped.agg(trials=("reached", "size"), reached=("reached", "sum"),
                       median_step=("step_to_target", "median"),
                       median_wall_s=("wall_s_to_target", "median"),
                       median_train_s=("train_s_to_target", "median")).reset_index()


def performance_ratios(scores: pd.DataFrame, metric: str = "force_rmse_mev_a") -> pd.DataFrame:
    """Problems x optimizers: each optimizer's seed-mean `metric` at its best lr on a problem (test
    set x study, and system, mode, stage where present), divided by the best optimizer's there.
    1 is the best; inf where an optimizer has no 'ok' rows on a problem."""
    ok = scored_rows(scores, metric)
    problems = [*present(ok, CONTEXT), "test_set"]
    means = summary_table(ok, [metric], by=("optimizer", "lr"), conditions=problems)
    best_lr = means.groupby([*problems, "optimizer"], sort=False)[f"{metric}_mean"].min()
    values = best_lr.unstack("optimizer")
    if (values <= 0).any().any():
        raise AnalysisError(f"performance ratios need positive {metric} values")
    return values.div(values.min(axis=1), axis=0).fillna(np.inf)


def performance_profiles(scores: pd.DataFrame, metric: str = "force_rmse_mev_a",
                         taus: Sequence[float] = DEFAULT_TAUS) -> pd.DataFrame:
    """Performance profiles (Dolan and More 2002; AlgoPerf, Dahl et al. 2023): per optimizer,
    rho(tau) = share of problems on which its `performance_ratios` is <= tau. Long format:
    optimizer, tau, rho, plus `problems` (how many) and `metric`."""
    taus = check_taus(taus)
    ratios = performance_ratios(scores, metric)
    rho = (ratios.to_numpy()[None, :, :] <= taus[:, None, None]).mean(axis=1)
    profiles = pd.DataFrame(rho, index=pd.Index(taus, name="tau"), columns=ratios.columns)
    long = profiles.melt(ignore_index=False, var_name="optimizer", value_name="rho").reset_index()
    return long[["optimizer", "tau", "rho"]].assign(problems=len(ratios), metric=metric)


def profile_scores(profiles: pd.DataFrame) -> pd.DataFrame:
    """Area under each optimizer's profile over log tau, divided by the log tau range: 1 for an
    optimizer best on every problem, 0 for one never within the largest tau. AlgoPerf integrates
    over linear tau in [1, 4]; the log scale weighs the small ratios errors differ by."""
    require_columns(profiles, ["optimizer", "tau", "rho"], "the profiles")
    rows = [{"optimizer": name, "score": _log_area(group["tau"].to_numpy(), group["rho"].to_numpy())}
            for name, group in profiles.sort_values("tau").groupby("optimizer", sort=False)]
    table = pd.DataFrame(rows).sort_values("score", ascending=False, kind="stable", ignore_index=True)
    return table.assign(rank=table["score"].rank(method="min", ascending=False).astype(int))


def check_taus(taus: Sequence[float]) -> np.ndarray:
    """`taus` as an array; raises unless at least two, increasing, starting at 1 or more."""
    values = np.asarray(taus, dtype=float)
    if values.ndim != 1 or len(values) < 2 or values[0] < 1 or np.any(np.diff(values) <= 0):
        shown = ", ".join(f"{value:g}" for value in values.ravel()[:5])
        raise AnalysisError(f"taus must be at least two increasing ratios >= 1; got {shown}")
    return values


def scored_rows(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """'ok' rows with a value of numeric `metric`, checked to have the columns a comparison needs."""
    ok = ok_rows(scores)
    require_numeric(ok, [metric])
    require_columns(ok, ["optimizer", "lr", "seed", "test_set"], "the scores")
    return ok.dropna(subset=[metric])


def conditions_of(ok: pd.DataFrame) -> list[str]:
    """Columns that must match for runs to be compared: lr, test_set and the context columns
    (study, system, mode, stage) that take several values."""
    varying = [c for c in present(ok, CONTEXT) if ok[c].nunique(dropna=False) > 1]
    return ["lr", *varying, "test_set"]


def _mean(x: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x, axis=axis)


def _log_area(taus: np.ndarray, rho: np.ndarray) -> float:
    log_tau = np.log(taus)
    return float(np.trapezoid(rho, log_tau) / (log_tau[-1] - log_tau[0]))
