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
from analysis.errors import AnalysisError
from analysis.recommend import first_order, recommendation_lines
from analysis.render import format_summary, render
from analysis.stats import at_chosen_lr, chosen_lrs
from analysis.tables import STOPPED, failed_rows, stopped_cells, summary_table, table_metrics
from analysis.zero_shot import zero_shot_lines

# Headings in plain ASCII, for any terminal.
HEADINGS = {"force_rmse_mev_a": "force RMSE (meV/A)", "energy_rmse_mev_atom": "energy RMSE (meV/atom)",
            "rel_energy_rmse_mev": "relative-energy RMSE (meV)",
            "barrier_error_mev": "barrier error, predicted - reference (meV; best: closest to 0)"}


def study_summary(folder: Path, wall_time_s: float) -> str:
    """Per stage and metric, optimizer x test set, mean (std) over seeds, for the printed closing tables."""
    scores = load(folder, table="scores")
    searched = searched_lrs(scores)
    by = ("optimizer", "lr") if scores.groupby("optimizer")["lr"].nunique().max() > 1 and not searched else \
        ("optimizer",)
    lines = [f"study {folder.name}: {scores['trial_id'].nunique()} trials, wall time {wall_time_s:.0f} s",
             f"results: {folder / 'results'}", *recommendation_lines(scores),  # the answer first
             *zero_shot_lines(scores), *best_lr_found_lines(scores, searched)]
    axes = present(scores, ["method", "protocol"])  # a space's methods and protocols: a table each
    for (stage, *values), part in scores.groupby(["stage", *axes], sort=False):
        stage = ", ".join([stage, *(f"{axis} {value}" for axis, value in zip(axes, values))])
        ok = part[part["status"] == "ok"]
        if searched:
            ok = at_chosen_lr_or_all(ok, scores)
        if ok.empty:
            continue
        ok = ok.sort_values(["optimizer", "lr"], key=_registry_then_descending(ok), kind="stable")
        metrics = table_metrics(ok)
        table = summary_table(ok, metric_cols=metrics, by=by)
        for metric in metrics:
            lines += ["", f"{HEADINGS[metric]}, stage {stage}, mean (std) over seeds, best two marked:",
                      render(format_summary(table, metric, by=by))]
    lines += stopped_lines(scores)
    failed = failed_rows(scores).drop_duplicates("trial_id")
    if not failed.empty:
        lines += ["", "not ok: " + ", ".join(f"{r.optimizer} lr={r.lr:g} seed={r.seed}: {r.status}"
                                              for r in failed.itertuples())]
    return "\n".join(lines)


def searched_lrs(scores: pd.DataFrame) -> bool:
    """Whether the learning rates were searched (Optuna): an optimizer ran several and no lr is run by
    two optimizers, so a table lr by lr would rank each optimizer alone (and mark every row best)."""
    return bool(scores.groupby("optimizer")["lr"].nunique().max() > 1
                and scores.groupby("lr")["optimizer"].nunique().max() < 2)


def at_chosen_lr_or_all(ok: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """A search's 'ok' rows at each optimizer's lr chosen on validation (all of them where there is
    no validation set to choose on)."""
    try:
        return at_chosen_lr(ok, chosen_lrs(scores))
    except AnalysisError:
        return ok


def best_lr_found_lines(scores: pd.DataFrame, searched: bool) -> list[str]:
    """A search's best lr found per optimizer (on validation), with how many of its trials were
    stopped early: 'best lr found (on validation): adam 0.0012 (5 trials, 3 stopped early), ...'."""
    if not searched:
        return []
    trials = scores.drop_duplicates("trial_id")
    try:
        chosen = chosen_lrs(first_order(scores)).set_index("optimizer")["lr"].to_dict()
    except AnalysisError:
        chosen = {}
    parts = []
    for optimizer in ordered_optimizers(trials):
        mine = trials[trials["optimizer"] == optimizer]
        found = f"{chosen[optimizer]:g}" if optimizer in chosen else "none finished"
        parts.append(f"{optimizer} {found} ({len(mine)} trials, {(mine['status'] == STOPPED).sum()} stopped early)")
    return ["", "best lr found (on validation): " + ", ".join(parts)]


def stopped_lines(scores: pd.DataFrame) -> list[str]:
    """The cells an adaptive study stopped, each as 'stopped at epoch k': neither finished (no
    scores, so out of the tables and the recommendation) nor failed."""
    cells = stopped_cells(scores)
    if cells.empty:
        return []
    return ["", "stopped early: " + ", ".join(
        f"{c.optimizer} lr={c.lr:g} at epoch {c.stopped_at_epoch:g} ({c.seeds} seed{'s' * (c.seeds > 1)})"
        for c in cells.itertuples())]


def _registry_then_descending(rows: pd.DataFrame):
    """Sort key: optimizers in registry order (the rows' `optimizer_order`), learning rates from
    large to small."""
    order = {name: i for i, name in enumerate(ordered_optimizers(rows))}

    def key(column: pd.Series) -> pd.Series:
        return column.map(order) if column.name == "optimizer" else -column

    return key
