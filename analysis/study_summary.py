"""The closing table a study prints: force RMSE per optimizer (and learning rate) and test set,
mean (std) over seeds, one table per stage, and the trials that did not end ok."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.charts import ordered_optimizers
from analysis.load import load
from analysis.recommend import recommendation_lines
from analysis.render import format_summary, render
from analysis.tables import summary_table


def study_summary(folder: Path, wall_time_s: float) -> str:
    """Force RMSE per optimizer and test set, mean (std) over seeds, for the printed closing table."""
    scores = load(folder, table="scores")
    scores = scores[scores["test_set"] != "replay_before"]  # the same foundation for every trial
    by = ("optimizer", "lr") if scores["lr"].nunique() > 1 else ("optimizer",)
    lines = [f"study {folder.name}: {scores['trial_id'].nunique()} trials, wall time {wall_time_s:.0f} s",
             f"results: {folder / 'results'}", *recommendation_lines(scores)]  # the answer first
    for stage, part in scores.groupby("stage", sort=False):
        ok = part[part["status"] == "ok"]
        if ok.empty:
            continue
        ok = ok.sort_values(["optimizer", "lr"], key=_registry_then_descending(ok), kind="stable")
        table = summary_table(ok, metric_cols=("force_rmse_mev_a",), by=by)
        wide = format_summary(table, "force_rmse_mev_a", by=by)
        lines += ["", f"force RMSE (meV/A), stage {stage}, mean (std) over seeds, best two marked:", render(wide)]
    failed = scores[scores["status"] != "ok"].drop_duplicates("trial_id")
    if not failed.empty:
        lines += ["", "not ok: " + ", ".join(f"{r.optimizer} lr={r.lr:g} seed={r.seed}: {r.status}"
                                              for r in failed.itertuples())]
    return "\n".join(lines)


def _registry_then_descending(rows: pd.DataFrame):
    """Sort key: optimizers in registry order (the rows' `optimizer_order`), learning rates from
    large to small."""
    order = {name: i for i, name in enumerate(ordered_optimizers(rows))}

    def key(column: pd.Series) -> pd.Series:
        return column.map(order) if column.name == "optimizer" else -column

    return key
