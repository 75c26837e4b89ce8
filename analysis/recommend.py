"""The answer first: which optimizer and learning rate to use, per group of test sets.

Each optimizer runs at its learning rate chosen on validation (`analysis.stats.chosen_lrs`). Per
group of test sets, the optimizers are ordered by their seed-mean error over the group's test sets
and the best is compared with the runner-up over paired seeds (`analysis.stats.best_two`): the
margin, the verdict in honest words (Holm's correction over the groups shown) and the seeds that
would settle it. A chosen lr at the edge of its grid is flagged with the next value to try.

Groups (`groups_of_test_sets`). Nothing in the rows marks a test set as in- or out-of-distribution, so
the groups follow what the rows do say, in this order:
- "validation": `val`, a split of the training data (in distribution). It chose the learning rates,
  so its winner is the optimizer and lr chosen on validation, and its margin is optimistic.
- "test sets": every other test set that is not a scan or the replay set (held-out files, e.g. MD
  at other temperatures than the training data), the error averaged over them seed by seed.
- "scans": test sets scored on relative energies (a non-null `rel_energy_rmse_mev`: paths and scans),
  by that error.
- "replay": the pre-training sample after fine-tuning, where a lower error means less forgetting.
The foundation's own scores before fine-tuning (`REFERENCE_TEST_SETS`) stay out. Only the
first-order stage is used where the rows have one (the L-BFGS stage refines its models).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.charts import title
from analysis.columns import distinct, present, without_reference_sets
from analysis.errors import AnalysisError
from analysis.stats import ALPHA, CONTEXT, SETTLED, VALIDATION, at_chosen_lr, best_two, chosen_lrs, min_seeds
from analysis.tables import ok_rows

GROUPS = ("validation", "test sets", "scans", "replay")
REPLAY = "replay"
SCAN_METRIC = "rel_energy_rmse_mev"
ERRORS = ("force_rmse_mev_a", "energy_rmse_mev_atom")  # the first a group holds values of is its metric
GROUP_METRICS = {"scans": (SCAN_METRIC, *ERRORS)}


def groups_of_test_sets(scores: pd.DataFrame) -> pd.Series:
    """The group (`GROUPS`) of each test set of `scores` (index: test set), references left out."""
    rows = without_reference_sets(scores)
    scans = set(rows.loc[rows[SCAN_METRIC].notna(), "test_set"]) if SCAN_METRIC in rows else set()
    names = distinct(rows["test_set"])
    group = ["validation" if name == VALIDATION else "scans" if name in scans else REPLAY if name == REPLAY
             else "test sets" for name in names]
    return pd.Series(group, index=pd.Index(names, name="test_set"), name="group")


def recommendation(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per group of test sets (and study, system, mode where several) with two optimizers:
    `group`, its `test_sets` and `metric`; the `best` optimizer at its lr chosen on validation
    (`best_lr`, `best_mean` in the metric's unit), the `runner_up` likewise, `difference` = best -
    runner-up over paired seeds (the margin, <= 0), `n` seeds, `low`/`high`/`interval`, `p_value`,
    `p_holm` (over the rows), `verdict`, `seeds_needed`, and the best lr's place in its grid
    (`edge`, `lr_min`, `lr_max`, `next_lr`, see `chosen_lrs`)."""
    rows = first_order(scores)
    chosen = chosen_lrs(rows)
    grouped, info = group_scores(at_chosen_lr(ok_rows(without_reference_sets(rows)), chosen), groups_of_test_sets(rows))
    if grouped["optimizer"].nunique() < 2:
        only = chosen.iloc[0]
        raise AnalysisError(f"one optimizer, {only['optimizer']} at lr {only['lr']:g} chosen on validation: "
                            "nothing to compare it with")
    context = present(grouped, CONTEXT)
    table = best_two(grouped, "value", [*context, "test_set"]).rename(columns={"test_set": "group"})
    edges = chosen[[*context, "optimizer", "edge", "lr_min", "lr_max", "next_lr"]].rename(
        columns={"optimizer": "best"})
    table = table.merge(info, on="group").merge(edges, on=[*context, "best"])
    leading = ["group", "test_sets", "metric", *context, "best", "best_lr", "best_mean", "runner_up", "runner_up_lr",
               "runner_up_mean", "difference"]
    table = table[[*leading, *(c for c in table.columns if c not in leading)]]
    contexts = pd.factorize(table[context].astype(str).agg(" ".join, axis=1) if context else table["group"] * 0)[0]
    return table.iloc[np.lexsort((table["group"].map(GROUPS.index), contexts))].reset_index(drop=True)


def first_order(scores: pd.DataFrame) -> pd.DataFrame:
    """The first-order stage's rows where the scores have several stages; all rows otherwise."""
    if "stage" in scores and (scores["stage"] == "first_order").any():
        return scores[scores["stage"] == "first_order"]
    return scores


def group_scores(rows: pd.DataFrame, groups: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (context, optimizer, lr, seed) and group, the mean over the group's test sets of the
    group's metric, as `value` with the group as `test_set`; and per group its `metric` and
    `test_sets`. A group whose rows hold none of its metrics is left out."""
    keys = [*present(rows, CONTEXT), "optimizer", "lr", "seed"]
    parts, info = [], []
    for group, members in groups.groupby(groups, sort=False):
        held = rows[rows["test_set"].isin(members.index)]
        metric = next((m for m in GROUP_METRICS.get(group, ERRORS) if m in held and held[m].notna().any()), None)
        if metric is None:
            continue
        held = held.dropna(subset=[metric])
        means = held.groupby(keys, sort=False, dropna=False)[metric].mean().rename("value").reset_index()
        parts.append(means.assign(test_set=group))
        info.append({"group": group, "test_sets": ", ".join(distinct(held["test_set"])), "metric": metric})
    if not parts:
        raise AnalysisError(f"no test set holds any of {', '.join((SCAN_METRIC, *ERRORS))}")
    return pd.concat(parts, ignore_index=True), pd.DataFrame(info)


def recommendation_text(table: pd.DataFrame) -> list[str]:
    """`recommendation` as lines to read first: the lr choice, one line per group (and the grid-edge
    note under it), and what the verdict words may claim with these seeds."""
    lines = ["Recommendation: each optimizer at its learning rate chosen on validation; per group of test "
             "sets, the best by seed-mean error against the runner-up over paired seeds (validation chose the "
             "lrs, so its margin flatters; the held-out groups test the choice):"]
    context = [c for c in present(table, CONTEXT) if table[c].nunique(dropna=False) > 1]
    noted = set()  # an optimizer's grid note once, under the first group it wins
    for row in table.itertuples(index=False):
        where = ", ".join(f"{c} {getattr(row, c)}" for c in context)
        lines.append(f"- {where + ': ' if where else ''}{group_line(row)}")
        key = (where, row.best)
        if (note := edge_note(row)) and key not in noted:
            lines.append(f"  {note}")
            noted.add(key)
    return [*lines, words_line(table)]


def group_line(row) -> str:
    """'test sets (300K, 1200K): adamw at lr 0.001, Force RMSE (meV/A) 58.6 vs 65 for the runner-up
    adam at lr 0.001: -6.4 (-9.8%), lower on every seed (3 seeds); about 7 seeds would settle it'."""
    share = f" ({row.difference / row.runner_up_mean:+.1%})" if row.runner_up_mean else ""
    metric = title(row.metric).replace("Å", "A")  # plain ASCII, as the study's closing tables
    members = f" ({row.test_sets})" if row.test_sets != row.group else ""
    line = (f"{row.group}{members}: {row.best} at lr {row.best_lr:g}, {metric} "
            f"{row.best_mean:.4g} vs {row.runner_up_mean:.4g} for the runner-up {row.runner_up} at lr "
            f"{row.runner_up_lr:g}: {row.difference:+.3g}{share}, {row.verdict}{_seed_count(row.n)}")
    if row.verdict in SETTLED:
        return line
    if not math.isfinite(row.seeds_needed):  # one seed: no spread to size a study by
        return line + "; more seeds would show whether it holds"
    return line + f"; about {row.seeds_needed:.0f} seeds would settle it"


def _seed_count(n: int) -> str:
    return "" if n == 1 else f" ({n} seeds)"  # "one seed" says it already


def edge_note(row) -> str:
    """Where the best lr lies at the edge of the grid its optimizer ran, the next value to try."""
    if row.edge in ("largest", "smallest"):
        return (f"lr {row.best_lr:g} is the {row.edge} of {row.best}'s grid ({row.lr_min:g} to {row.lr_max:g}): "
                f"the optimum may lie beyond it; try {row.next_lr:g} next (the next value of the 1-2-5 series)")
    return f"lr {row.best_lr:g} is the only one {row.best} ran: nothing compared it" if row.edge == "only" else ""


def chosen_lr_line(chosen: pd.DataFrame) -> str:
    """`chosen_lrs` in a line: 'lr chosen on validation (force_rmse_mev_a on val): adam 0.001,
    schedulefree 0.005 (the largest of its grid: try 0.01 next)'."""
    context = [c for c in present(chosen, CONTEXT) if chosen[c].nunique(dropna=False) > 1]
    edge = {"largest": "the largest of its grid: try {:g} next", "smallest": "the smallest of its grid: try {:g} next"}
    parts = [" ".join([*(f"{c} {getattr(row, c)}:" for c in context), row.optimizer, f"{row.lr:g}"])
             + (f" ({edge[row.edge].format(row.next_lr)})" if row.edge in edge else "")
             for row in chosen.itertuples(index=False)]
    metrics = ", ".join(distinct(chosen["selection_metric"]))
    return f"lr chosen on validation ({metrics} on {VALIDATION}): {', '.join(parts)}."


def words_line(table: pd.DataFrame) -> str:
    """What the verdicts may claim with the seeds these comparisons have."""
    needed = min_seeds(ALPHA)
    line = (f"'better'/'worse' need the exact sign-flip test at {ALPHA:.0%} after Holm's correction over these "
            f"{len(table)} comparisons")
    if (table["n"] < needed).any():
        return line + f"; with fewer than {needed} seeds it cannot get there, so the words say what the seeds showed."
    return line + "."


def recommendation_lines(scores: pd.DataFrame) -> list[str]:
    """`recommendation_text`, or one line saying why there is none (one optimizer, no validation rows, ...)."""
    try:
        return recommendation_text(recommendation(scores))
    except AnalysisError as error:
        return [f"Recommendation: none ({error})"]
