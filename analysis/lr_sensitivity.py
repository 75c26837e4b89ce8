"""Learning-rate sensitivity: per optimizer and test set, how its seed-mean error varies over the
learning rates it ran, and what choosing the lr on validation (`analysis.stats.chosen_lrs`) costs
there against the lr that would have been best on that test set.

Pure: `DataFrame -> DataFrame`, 'ok' rows only, the foundation's scores before fine-tuning
(`REFERENCE_TEST_SETS`) left out. Lower is better.
"""

from __future__ import annotations

import pandas as pd

from analysis.columns import present, require_numeric, rows_with, without_reference_sets
from analysis.stats import CONTEXT, chosen_lrs
from analysis.tables import check_one_row_per_seed, failed_rows, ok_rows


def lr_sensitivity(scores: pd.DataFrame, metric: str = "force_rmse_mev_a") -> pd.DataFrame:
    """One row per (context, optimizer, test set holding `metric`): `lrs` (how many it ran), the
    seed mean at the lr chosen on validation (`chosen_lr`, `at_chosen`), the best and the worst
    seed mean over its lrs (`best_lr`, `best`, `worst_lr`, `worst`; means of the 'ok' seeds),
    `spread_pct` = 100 x (worst - best) / best (how much the lr matters), `chosen_loss_pct` = 100 x
    (at_chosen - best) / best (what the validation choice gives up on this test set; 0 where it is
    the best) and `failed_at`, the lrs where a trial did not end ok (which the choice avoids). The
    context columns (study, system, mode, stage) are keys where they vary."""
    rows = rows_with(without_reference_sets(ok_rows(scores)), metric).dropna(subset=[metric])
    require_numeric(rows, [metric])
    context = [c for c in present(rows, CONTEXT) if rows[c].nunique(dropna=False) > 1]
    keys = [*context, "optimizer", "test_set"]
    check_one_row_per_seed(rows, [*keys, "lr"])
    means = rows.groupby([*keys, "lr"], sort=False, dropna=False)[metric].mean().rename("mean").reset_index()
    ordered = means.sort_values("mean", kind="stable").groupby(keys, sort=False, dropna=False)
    best = ordered.head(1).rename(columns={"lr": "best_lr", "mean": "best"})
    worst = ordered.tail(1).rename(columns={"lr": "worst_lr", "mean": "worst"})
    chosen = chosen_lrs(scores)[[*context, "optimizer", "lr"]]
    at_chosen = means.merge(chosen, on=[*context, "optimizer", "lr"]).rename(
        columns={"lr": "chosen_lr", "mean": "at_chosen"})
    lrs = means.groupby(keys, sort=False, dropna=False)["lr"].nunique().rename("lrs").reset_index()
    table = lrs.merge(at_chosen, on=keys).merge(best, on=keys).merge(worst, on=keys)
    table = table.assign(spread_pct=100 * (table["worst"] - table["best"]) / table["best"],
                         chosen_loss_pct=100 * (table["at_chosen"] - table["best"]) / table["best"])
    return table.merge(failed_lrs(scores, [*context, "optimizer"]), on=[*context, "optimizer"], how="left").fillna(
        {"failed_at": ""})


def failed_lrs(scores: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per `keys`, the lrs at which a trial failed (`failed_rows`) as text, '0.001, 0.005'."""
    failed = failed_rows(scores).drop_duplicates([*keys, "lr"]).sort_values("lr")
    return failed.groupby(keys, sort=False, dropna=False)["lr"].agg(
        lambda lrs: ", ".join(f"{lr:g}" for lr in lrs)).rename("failed_at").reset_index()
