"""Verdicts with confidence over seeds: paired comparisons against a baseline optimizer, the best
two per test set and the seeds that would settle them, rank stability across seeds, time-to-target
on the validation curves, and performance profiles across problems (AlgoPerf's rho(tau) and its
area score).

All functions are pure (`DataFrame -> DataFrame`) and use rows with status 'ok', without the
reference rows of the foundation before fine-tuning (`REFERENCE_TEST_SETS`). Metrics are errors:
lower is better. Seeds pair runs (same seed, same data order and initial head), so differences are
taken seed by seed before averaging; runs are compared on the same test set and, where the data
have several, the same study, system, mode and stage (`CONTEXT`).

Learning rates (`LR_CHOICES`): by default each optimizer runs at the learning rate chosen on the
validation set (`chosen_lrs`: test set 'val', force RMSE, or energy RMSE where it has no forces;
per study, system, mode and stage) and every other test set is scored with it, so no test set
tunes the lr it is scored at; the validation set itself then leaves the statistics, as it chose.
'same' pairs optimizers at the same lr, 'each' makes every (optimizer, lr) pair a solver of its own.

Words (`verdict_words`): a verdict is 'better' or 'worse' only where the exact two-sided sign-flip
permutation test of the mean paired difference (`TEST`) holds at ALPHA = 5% after Holm's
correction over the comparisons of one table. With n paired seeds its smallest p is 2 / 2^n, so
below 6 seeds it never can; the interval is then the range of the paired differences over seeds and
the words say what the seeds showed: 'lower on every seed', 'higher on every seed' or 'mixed'.

Statistics come from scipy: `scipy.stats.bootstrap` (percentile intervals), `scipy.stats.
permutation_test` (the exact sign-flip test), `scipy.stats.kendalltau` and `scipy.stats.norm`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.columns import distinct, present, require_columns, require_numeric, without_reference_sets
from analysis.errors import AnalysisError
from analysis.tables import check_one_row_per_seed, curve_summary, failed_rows, ok_rows

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # the level a 'better' or 'worse' must reach after Holm's correction
N_RESAMPLES = 9999  # bootstrap resamples; also the cap on sign-flip permutations (exact up to 13 seeds)
SEED = 0  # the bootstrap's random generator seed: the same data give the same interval
POWER = 0.8
# Kendall's tau = 1 - 2 x (share of optimizer pairs whose order flips between two seeds): 0.7 lets
# 15% of the pairs flip. With 3 optimizers a single flip gives tau = 1/3, already below it.
STABLE_TAU = 0.7
TARGET_FACTOR = 1.1
DEFAULT_TAUS = np.geomspace(1.0, 2.0, 101)
# A space's training protocols are no context: `analysis.load` names each pair a solver, `adam+ema`.
CONTEXT = ("study", "system", "mode", "stage")
VALIDATION = "val"  # the test set learning rates are chosen on
SELECTION_METRICS = ("force_rmse_mev_a", "energy_rmse_mev_atom")  # the first the validation set holds chooses
LR_CHOICES = {
    "validation": "each optimizer at its learning rate chosen on validation",
    "same": "optimizers paired at the same learning rate",
    "each": "each (optimizer, learning rate) pair a solver of its own",
}
TEST = "exact two-sided sign-flip permutation test of the mean paired difference (scipy.stats.permutation_test)"
BETTER, WORSE, NO_CLEAR = "better", "worse", "no clear difference"
LOWER, HIGHER, MIXED, ONE_SEED = "lower on every seed", "higher on every seed", "mixed", "one seed"
SETTLED = (BETTER, WORSE)
RANGE, BOOTSTRAP = "range over seeds", f"{CONFIDENCE:.0%} bootstrap interval"


def paired_comparison(scores: pd.DataFrame, baseline: str = "adam", metric: str = "force_rmse_mev_a", *,
                      lr_choice: str = "validation", confidence: float = CONFIDENCE,
                      n_resamples: int = N_RESAMPLES, seed: int = SEED) -> pd.DataFrame:
    """Each optimizer against `baseline` over paired seeds, one row per (optimizer, lr, test set).

    `lr_choice` (`LR_CHOICES`): 'validation' pairs each optimizer at its lr chosen on validation
    with the baseline at its own (`baseline_lr`), on every test set but the validation set; 'same'
    pairs them lr by lr; 'each' names solvers `optimizer@lr` (a `baseline` such as 'adam@0.001').
    `difference` is the mean over paired seeds of (optimizer - baseline) `metric`, negative where the
    optimizer has the lower error; `difference_std` its std (ddof=1). `low`, `high`: the range of
    the paired differences while the test cannot reach ALPHA (fewer than 6 seeds), else their
    `confidence` percentile bootstrap interval (`n_resamples` resamples, generator seeded with
    `seed`); `interval` names which. `p_value`: the exact sign-flip test (`TEST`); `p_holm`: Holm's
    adjustment over the table's rows; `verdict`: `verdict_words`; `seeds_needed`: `settle_seeds`
    where the verdict is not settled. A context column (study, system, mode, stage) that varies is
    kept as a key.
    """
    rows, conditions = arranged(scores, metric, lr_choice)
    pairs = paired_differences(rows, baseline, metric, conditions)
    table = comparison_table(pairs, confidence, n_resamples, seed)
    return table.assign(metric=metric)


def arranged(scores: pd.DataFrame, metric: str, lr_choice: str) -> tuple[pd.DataFrame, list[str]]:
    """The 'ok' rows with a `metric` value that `lr_choice` compares, and the columns two runs must
    share to be compared (`conditions_of`): lr among them only for 'same'."""
    if lr_choice not in LR_CHOICES:
        raise AnalysisError(f"unknown lr choice {lr_choice!r}; known: {', '.join(LR_CHOICES)}")
    ok = scored_rows(scores, metric)
    if lr_choice == "same":
        return ok, conditions_of(ok, with_lr=True)
    if lr_choice == "each":
        return ok.assign(optimizer=solver_names(ok)), conditions_of(ok, with_lr=False)
    rows = at_chosen_lr(ok[ok["test_set"] != VALIDATION], chosen_lrs(scores))
    if rows.empty:
        raise AnalysisError(f"no test set with {metric!r} besides the validation set {VALIDATION!r}, which chose "
                            "the learning rates: compare lr by lr instead")
    return rows, conditions_of(rows, with_lr=False)


def solver_names(rows: pd.DataFrame) -> pd.Series:
    """'optimizer@lr' per row, e.g. 'adam@0.001': each (optimizer, lr) pair a solver of its own."""
    return rows["optimizer"].astype(str) + "@" + rows["lr"].map("{:g}".format)


def chosen_lrs(scores: pd.DataFrame) -> pd.DataFrame:
    """Per context (study, system, mode, stage where present) and optimizer, the learning rate with
    the lowest seed-mean error on the validation set: its force RMSE, or its energy RMSE where the
    context's validation rows hold no forces (`selection_metric`). An lr where a trial did not end
    ok (`failed`; a cell an adaptive study stopped has no scores, so it is no candidate, and
    not failed either) is chosen only where every lr has such a trial. Columns: the context, optimizer,
    `lr`, `selection_metric`, `validation_mean` (its unit), `seeds`, `failed`, the grid the optimizer
    ran (`lrs`, `lr_min`, `lr_max`), `edge` ('largest', 'smallest', '' inside the grid, 'only' for a
    single lr) and `next_lr`, the value to try beyond an edge (`next_lr_beyond`)."""
    require_columns(scores, ["optimizer", "lr", "seed", "test_set", "status"], "the scores")
    validation = scores[scores["test_set"] == VALIDATION]
    if validation.empty:
        raise AnalysisError(f"choosing learning rates on validation needs rows of test set {VALIDATION!r}; test "
                            f"sets: {', '.join(map(str, distinct(scores['test_set'])))}")
    context = present(scores, CONTEXT)
    candidates = pd.concat([lr_candidates(rows, context) for _, rows in
                            validation.groupby(context, sort=False, dropna=False)] if context else
                           [lr_candidates(validation, context)], ignore_index=True)
    keys = [*context, "optimizer"]
    best = candidates.sort_values(["failed", "validation_mean", "lr"], kind="stable").groupby(
        keys, sort=False, dropna=False).head(1)
    grid = scores.groupby(keys, sort=False, dropna=False)["lr"].agg(lrs="nunique", lr_min="min", lr_max="max")
    return with_grid_edge(best.merge(grid.reset_index(), on=keys)).reset_index(drop=True)


def lr_candidates(validation: pd.DataFrame, context: list[str]) -> pd.DataFrame:
    """Per (optimizer, lr) of one context's validation rows: the seed mean of the first of
    `SELECTION_METRICS` they hold, its 'ok' seeds and the trials that did not end ok."""
    ok = validation[validation["status"] == "ok"]
    metric = next((m for m in SELECTION_METRICS if m in ok and ok[m].notna().any()), None)
    if metric is None:
        raise AnalysisError(f"the validation rows hold none of {', '.join(SELECTION_METRICS)} to choose "
                            "learning rates by")
    keys = [*context, "optimizer", "lr"]
    scored = ok.dropna(subset=[metric]).groupby(keys, sort=False, dropna=False)[metric].agg(
        validation_mean="mean", seeds="count")
    failed = failed_rows(validation).groupby(keys, sort=False, dropna=False)["seed"].nunique()
    table = scored.join(failed.rename("failed")).fillna({"failed": 0}).reset_index()
    return table.assign(selection_metric=metric, failed=table["failed"].astype(int))


def with_grid_edge(chosen: pd.DataFrame) -> pd.DataFrame:
    """`chosen` with `edge` (where the chosen lr lies in the grid) and `next_lr` beyond an edge."""
    edge = np.select([chosen["lrs"] < 2, chosen["lr"] >= chosen["lr_max"], chosen["lr"] <= chosen["lr_min"]],
                     ["only", "largest", "smallest"], "")
    upward = {"largest": True, "smallest": False}
    next_lr = [next_lr_beyond(lr, upward[e]) if e in upward else np.nan for lr, e in zip(chosen["lr"], edge)]
    return chosen.assign(edge=edge, next_lr=next_lr)


def next_lr_beyond(lr: float, upward: bool) -> float:
    """The next value of the 1-2-5 series (..., 1e-3, 2e-3, 5e-3, 1e-2, ...) above (or below) `lr`:
    the learning rate to try next where the chosen one is the largest (smallest) of the grid. A step
    of 2 to 2.5x: far enough to see a trend, near enough to stay below where the run diverges."""
    decade = math.floor(math.log10(lr))
    series = [float(f"{m}e{d}") for d in range(decade - 1, decade + 2) for m in (1, 2, 5)]
    beyond = [v for v in series if (v > lr * (1 + 1e-9) if upward else v < lr * (1 - 1e-9))]
    return beyond[0] if upward else beyond[-1]


def at_chosen_lr(rows: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """Those of `rows` (scores or curves) whose optimizer ran at its `chosen_lrs` lr in their context."""
    keys = [c for c in (*CONTEXT, "optimizer", "lr") if c in rows and c in chosen]
    return rows.merge(chosen[keys].drop_duplicates(), on=keys)


def paired_differences(rows: pd.DataFrame, baseline: str, metric: str, conditions: list[str]) -> pd.DataFrame:
    """One row per (other optimizer, condition, seed) that the baseline also has: `value`,
    `baseline_value` and `difference` = value - baseline_value; with lr not among `conditions`, also
    each side's lr (`lr`, `baseline_lr`)."""
    check_one_row_per_seed(rows, ["optimizer", *conditions])
    optimizers = distinct(rows["optimizer"])
    if baseline not in optimizers or len(optimizers) < 2:
        raise AnalysisError(f"need 'ok' rows of the baseline optimizer {baseline!r} and of another; optimizers: "
                            f"{', '.join(optimizers)}")
    lr = [] if "lr" in conditions else ["lr"]
    values = rows[["optimizer", *lr, *conditions, "seed", metric]].rename(columns={metric: "value"})
    base = values[values["optimizer"] == baseline].drop(columns="optimizer").rename(
        columns={"value": "baseline_value", **{"lr": "baseline_lr" for _ in lr}})
    pairs = values[values["optimizer"] != baseline].merge(base, on=[*conditions, "seed"])
    if pairs.empty:
        raise AnalysisError(f"no run pairs with one of {baseline!r} (same {', '.join(conditions)} and seed)")
    sides = ["optimizer", *lr, "baseline", *(["baseline_lr"] if lr else [])]
    pairs = pairs.assign(baseline=baseline)[[*sides, *conditions, "seed", "value", "baseline_value"]]
    return pairs.assign(difference=pairs["value"] - pairs["baseline_value"])


def comparison_table(pairs: pd.DataFrame, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                     seed: int = SEED) -> pd.DataFrame:
    """`difference_stats` per comparison of `paired_differences` rows (keyed by every column but
    seed and the values), with Holm's p, verdicts and seeds needed over the whole table."""
    keys = [c for c in pairs.columns if c not in ("seed", "value", "baseline_value", "difference")]
    rows = [{**dict(zip(keys, key)), **difference_stats(group, confidence, n_resamples, seed)}
            for key, group in pairs.groupby(keys, sort=False, dropna=False)]
    return with_verdicts(pd.DataFrame(rows), 1 - confidence)


def difference_stats(pairs: pd.DataFrame, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                     seed: int = SEED) -> dict[str, float | str]:
    """Seeds, means, the mean paired difference with its std, its interval (`RANGE` while the test
    cannot reach 1 - `confidence`, else `BOOTSTRAP`) and the sign-flip p of `paired_differences` rows
    (one group)."""
    difference = pairs["difference"].to_numpy(dtype=float)
    n = len(difference)
    if n < 2:
        (low, high), interval = (np.nan, np.nan), ""
    elif n < min_seeds(1 - confidence):
        (low, high), interval = (difference.min(), difference.max()), RANGE
    else:
        (low, high), interval = bootstrap_interval(difference, confidence, n_resamples, seed), BOOTSTRAP
    return {"n": n, "mean": pairs["value"].mean(), "baseline_mean": pairs["baseline_value"].mean(),
            "difference": difference.mean(), "difference_std": np.std(difference, ddof=1) if n > 1 else np.nan,
            "low": low, "high": high, "interval": interval, "p_value": sign_flip_p(difference, n_resamples, seed)}


def with_verdicts(table: pd.DataFrame, alpha: float = ALPHA, power: float = POWER) -> pd.DataFrame:
    """`table` (rows of `difference_stats`) with `p_holm` over its rows, `verdict` and, where the
    verdict is not 'better' or 'worse', `seeds_needed` (`settle_seeds` for this many comparisons)."""
    p_holm = holm(table["p_value"])
    verdict = verdict_words(table["n"], table["low"], table["high"], table["difference"], p_holm, alpha)
    needed = settle_seeds(table["difference"], table["difference_std"], int(table["p_value"].notna().sum()),
                          alpha, power)
    return table.assign(p_holm=p_holm, verdict=verdict, seeds_needed=needed.where(~verdict.isin(SETTLED)))


def verdict_words(n: pd.Series, low: pd.Series, high: pd.Series, difference: pd.Series, p_holm: pd.Series,
                  alpha: float = ALPHA) -> pd.Series:
    """The verdict of (optimizer - baseline) error. Where the exact test can reach `alpha`
    (`min_seeds`, 6 seeds at 5%): 'better' or 'worse' where Holm's p is <= `alpha`, in the direction
    of the mean difference, else 'no clear difference'. Below: 'lower on every seed' or 'higher on
    every seed' where the range of paired differences (`low`, `high`) excludes zero, else 'mixed';
    'one seed' for a single pair."""
    testable, significant = n >= min_seeds(alpha), p_holm <= alpha
    cases = [n < 2, ~testable & (high < 0), ~testable & (low > 0), ~testable,
             significant & (difference < 0), significant & (difference > 0)]
    return pd.Series(np.select(cases, [ONE_SEED, LOWER, HIGHER, MIXED, BETTER, WORSE], NO_CLEAR), index=n.index)


def holm(p: pd.Series) -> pd.Series:
    """Holm's step-down adjusted p values (Holm 1979) over the non-null `p`: the i-th smallest of m
    times (m - i + 1), made non-decreasing, capped at 1. It controls the chance of any false
    'better' or 'worse' among the m comparisons at the level compared with."""
    valid = p.dropna()
    order = np.argsort(valid.to_numpy(), kind="stable")
    scaled = (len(valid) - np.arange(len(valid))) * valid.to_numpy()[order]
    adjusted = pd.Series(np.minimum(1.0, np.maximum.accumulate(scaled)), index=valid.index[order])
    return adjusted.reindex(p.index)


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


def min_seeds(alpha: float = ALPHA) -> int:
    """The fewest paired seeds with which the exact test can reach `alpha`: 2 / 2^n <= alpha (6 at 5%)."""
    return max(2, math.ceil(math.log2(2 / alpha) - 1e-12))


def settle_seeds(difference: pd.Series, std: pd.Series, comparisons: int, alpha: float = ALPHA,
                 power: float = POWER) -> pd.Series:
    """Paired seeds that would settle each comparison among `comparisons` (an estimate): at the
    Bonferroni level alpha / comparisons, which Holm's first step uses, the larger of
    `normal_seeds` and `min_seeds` (the exact test's floor). inf where the difference is zero."""
    level = alpha / max(comparisons, 1)
    return np.maximum(normal_seeds(difference, std, level, power), min_seeds(level))


def normal_seeds(difference: pd.Series, std: pd.Series, alpha: float = ALPHA, power: float = POWER) -> pd.Series:
    """Paired seeds a two-sided normal-approximation test at level `alpha` needs to detect
    `difference` with `power`: ceil(((z_(1-alpha/2) + z_power) * std / |difference|)^2), at least 2;
    NaN where std is. Optimistic for small n, where a t test needs one or two seeds more."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.ceil((z * std / difference.abs()) ** 2)
    return np.maximum(n.where(difference != 0, np.inf).where(std.notna()), 2)


def seeds_needed(scores: pd.DataFrame, metric: str = "force_rmse_mev_a", *, lr_choice: str = "validation",
                 confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> pd.DataFrame:
    """Per test set (and lr with lr_choice 'same'; context), the best two optimizers by seed mean and
    `best_two`'s comparison of them: the paired test rather than the overlap of the two optimizers'
    own intervals, which ignores what a seed shares between them."""
    rows, conditions = arranged(scores, metric, lr_choice)
    return best_two(rows, metric, conditions, confidence=confidence, n_resamples=n_resamples, seed=seed)


def best_two(rows: pd.DataFrame, metric: str, conditions: list[str], *, confidence: float = CONFIDENCE,
             n_resamples: int = N_RESAMPLES, seed: int = SEED) -> pd.DataFrame:
    """Per condition with two optimizers or more, the best (`best`, lowest seed mean of `metric`)
    against the runner-up (`runner_up`) as `comparison_table` computes it, Holm over all conditions:
    `difference` = best - runner-up, <= 0 by construction; `extra_seeds` = seeds_needed - n."""
    blocks = [block for _, block in rows.groupby(conditions, sort=False, dropna=False)
              if block["optimizer"].nunique() >= 2]
    if not blocks:
        raise AnalysisError(f"no test set has 'ok' {metric!r} rows of two optimizers")
    pairs = pd.concat([_best_pairs(block, metric, conditions) for block in blocks], ignore_index=True)
    table = comparison_table(pairs, confidence, n_resamples, seed)
    sides = {"lr": "best_lr", "baseline_lr": "runner_up_lr"} if "baseline_lr" in table else {}  # else lr is shared
    table = table.rename(columns={"optimizer": "best", "baseline": "runner_up", **sides, "mean": "best_mean",
                                  "baseline_mean": "runner_up_mean"})
    return table.assign(extra_seeds=np.maximum(table["seeds_needed"] - table["n"], 0))


def _best_pairs(block: pd.DataFrame, metric: str, conditions: list[str]) -> pd.DataFrame:
    best, runner_up = block.groupby("optimizer")[metric].mean().nsmallest(2).index
    return paired_differences(block[block["optimizer"].isin([best, runner_up])], runner_up, metric, conditions)


def seed_ranks(scores: pd.DataFrame, metric: str = "force_rmse_mev_a", *,
               lr_choice: str = "validation") -> pd.DataFrame:
    """Each optimizer's rank (1 = lowest `metric`, ties share the lowest) within each (condition,
    seed), its lr chosen by `lr_choice` (`LR_CHOICES`; 'same' ranks within each lr): columns
    `conditions_of`, seed, optimizer, lr, `value` and `rank`."""
    return _ranks(*arranged(scores, metric, lr_choice), metric)


def _ranks(rows: pd.DataFrame, conditions: list[str], metric: str) -> pd.DataFrame:
    check_one_row_per_seed(rows, ["optimizer", *conditions])
    lr = [] if "lr" in conditions else ["lr"]
    ranked = rows[[*conditions, "seed", "optimizer", *lr, metric]].rename(columns={metric: "value"})
    rank = ranked.groupby([*conditions, "seed"], sort=False, dropna=False)["value"].rank(method="min")
    return ranked.assign(rank=rank.astype(int)).reset_index(drop=True)


def rank_stability(scores: pd.DataFrame, metric: str = "force_rmse_mev_a", threshold: float = STABLE_TAU, *,
                   lr_choice: str = "validation") -> pd.DataFrame:
    """Kendall's tau (scipy.stats.kendalltau, tau-b) between two seeds' orderings of the optimizers by
    `metric`, per condition (test set, lr with lr_choice 'same', ...) and pair of seeds, over the
    optimizers both seeds scored (`n`); `stable`: tau >= `threshold` (STABLE_TAU = 0.7: at most 15%
    of pairs flip). A condition where every optimizer ties has no order to compare: NaN tau."""
    rows, conditions = arranged(scores, metric, lr_choice)
    taus = []
    for key, block in _ranks(rows, conditions, metric).groupby(conditions, sort=False, dropna=False):
        wide = block.pivot(index="optimizer", columns="seed", values="value")
        for a, b in combinations(wide.columns, 2):
            both = wide[[a, b]].dropna()
            tau = _kendall_tau(both[a], both[b])
            taus.append({**dict(zip(conditions, key)), "seed_a": a, "seed_b": b, "n": len(both), "tau": tau})
    if not taus:
        raise AnalysisError("rank stability needs at least two seeds of the same lr and test set")
    table = pd.DataFrame(taus)
    return table.assign(stable=table["tau"] >= threshold)


def _kendall_tau(a: pd.Series, b: pd.Series) -> float:
    if len(a) < 2 or a.nunique() < 2 or b.nunique() < 2:  # a constant ordering has no tau
        return np.nan
    return float(stats.kendalltau(a, b).statistic)


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


def performance_ratios(scores: pd.DataFrame, metric: str = "force_rmse_mev_a", *,
                       lr_choice: str = "validation") -> pd.DataFrame:
    """Problems x optimizers: each optimizer's seed-mean `metric` on a problem (test set, and study,
    system, mode, stage where they vary), divided by the best optimizer's there. 1 is the best; inf
    where an optimizer has no 'ok' rows on a problem. The lr: chosen once on validation, the same on
    every problem (`lr_choice` 'validation', the validation set then no problem), or every
    (optimizer, lr) pair a solver ('each'); never the best lr on the problem being scored."""
    rows, conditions = arranged(scores, metric, lr_choice)
    values = rows.groupby([*conditions, "optimizer"], sort=False, dropna=False)[metric].mean().unstack("optimizer")
    if (values <= 0).any().any():
        raise AnalysisError(f"performance ratios need positive {metric} values")
    return values.div(values.min(axis=1), axis=0).fillna(np.inf)


def performance_profiles(scores: pd.DataFrame, metric: str = "force_rmse_mev_a",
                         taus: Sequence[float] = DEFAULT_TAUS, *, lr_choice: str = "validation") -> pd.DataFrame:
    """Performance profiles (Dolan and More 2002; AlgoPerf, Dahl et al. 2023): per optimizer,
    rho(tau) = share of problems on which its `performance_ratios` is <= tau. Long format:
    optimizer, tau, rho, plus `problems` (how many) and `metric`."""
    taus = check_taus(taus)
    ratios = performance_ratios(scores, metric, lr_choice=lr_choice)
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
    """'ok' rows with a value of numeric `metric`, without the foundation's reference rows
    (`without_reference_sets`: equal for every trial, a tie on every comparison), checked to have
    the columns a comparison needs."""
    ok = ok_rows(without_reference_sets(scores))
    require_numeric(ok, [metric])
    require_columns(ok, ["optimizer", "lr", "seed", "test_set"], "the scores")
    return ok.dropna(subset=[metric])


def conditions_of(ok: pd.DataFrame, with_lr: bool) -> list[str]:
    """Columns that must match for runs to be compared: lr where `with_lr`, the context columns
    (study, system, mode, stage) that take several values, and test_set."""
    varying = [c for c in present(ok, CONTEXT) if ok[c].nunique(dropna=False) > 1]
    return [*(["lr"] if with_lr else []), *varying, "test_set"]


def _mean(x: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x, axis=axis)


def _log_area(taus: np.ndarray, rho: np.ndarray) -> float:
    log_tau = np.log(taus)
    return float(np.trapezoid(rho, log_tau) / (log_tau[-1] - log_tau[0]))
