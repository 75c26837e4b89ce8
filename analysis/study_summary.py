"""The closing tables a study prints: the recommendation and the zero-shot check first, then per
stage, optimizer (and learning rate) x test set, mean (std) over seeds, one table per metric a test
set holds (force RMSE on the sets with forces, energy RMSE on those with energies, relative-energy
RMSE and barrier error on paths and scans), and the trials that did not end ok. The foundation's
scores before fine-tuning (`REFERENCE_TEST_SETS`) are a column of their own: the reference the
fine-tuned ones are read against."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.charts import ordered_optimizers
from analysis.columns import present
from analysis.load import load
from analysis.recommend import recommendation_lines
from analysis.render import format_summary, render
from analysis.tables import summary_table, table_metrics
from analysis.zero_shot import zero_shot_lines

# Headings in plain ASCII, for any terminal.
HEADINGS = {"force_rmse_mev_a": "force RMSE (meV/A)", "energy_rmse_mev_atom": "energy RMSE (meV/atom)",
            "rel_energy_rmse_mev": "relative-energy RMSE (meV)",
            "barrier_error_mev": "barrier error, predicted - reference (meV; best: closest to 0)"}


def study_summary(folder: Path, wall_time_s: float) -> str:
    """Per stage and metric, optimizer x test set, mean (std) over seeds, for the printed closing tables."""
    scores = load(folder, table="scores")
    by = ("optimizer", "lr") if scores.groupby("optimizer")["lr"].nunique().max() > 1 else ("optimizer",)
    lines = [f"study {folder.name}: {scores['trial_id'].nunique()} trials, wall time {wall_time_s:.0f} s",
             f"results: {folder / 'results'}", *recommendation_lines(scores),  # the answer first
             *zero_shot_lines(scores)]
    for (stage, *protocol), part in scores.groupby(["stage", *present(scores, ["protocol"])], sort=False):
        stage = ", protocol ".join([stage, *protocol])  # a space's protocols: a table each
        ok = part[part["status"] == "ok"]
        if ok.empty:
            continue
        ok = ok.sort_values(["optimizer", "lr"], key=_registry_then_descending(ok), kind="stable")
        metrics = table_metrics(ok)
        table = summary_table(ok, metric_cols=metrics, by=by)
        for metric in metrics:
            lines += ["", f"{HEADINGS[metric]}, stage {stage}, mean (std) over seeds, best two marked:",
                      render(format_summary(table, metric, by=by))]
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
