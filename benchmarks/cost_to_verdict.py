"""Cost to a verdict: a grid space and its adaptive twin (the same space with `[adaptive]`, study.adaptive)
on the same data; how much of the grid's trial-seconds the twin used, and whether it reaches the grid's
answer.

    python benchmarks/cost_to_verdict.py [--space lr_ablation] [--optimizers sgd,adam,...] [--lrs 5e-3,...]
        [--seeds 0,1] [--epochs 6] [--scheduler asha] [--grace-period 1] [--reduction-factor 3]
        [--data-size full] [--gpus-per-trial 0] [--workdir DIR] [-- further study.launch arguments]

Prints, per group of test sets (analysis.recommend), the grid's and the twin's recommendation (the
optimizer and lr chosen on validation that wins the group), their top 3 (each optimizer at its lr
chosen on validation, by seed-mean error), whether each matches, and Kendall's tau between the two
studies' seed-mean errors over the cells both finished; then the trial-seconds of each (the sum of
the trials' own wall times: a stopped trial's up to its last epoch) and their ratio, the twin's at
the grid's pace (`at_grid_pace`) and its share of optimizer steps (both free of the machine's other
load, which moves wall times), GPU-hours where trials had GPUs, and the cells the twin stopped per
optimizer (which optimizers early stopping penalises); last, the twin replayed from the grid's own
curves through the same scheduler with 2 trials at a time and with every cell at once
(`replayed_epochs`: what concurrency does to the share, at no cost). A cell's protocol or method is
part of its optimizer's label (analysis.load: 'adam+cosine'). A study already finished in DIR on the
same space and flags is read, not run again; twins of other settings get names of their own there
and share the grid. The goal: the same recommendation at <= 35% of the grid's
trial-seconds.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
import tomllib
import yaml
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.errors import AnalysisError  # noqa: E402
from analysis.load import load  # noqa: E402
from analysis.recommend import first_order, group_scores, groups_of_test_sets, recommendation  # noqa: E402
from analysis.stats import at_chosen_lr, chosen_lrs  # noqa: E402
from analysis.tables import STOPPED, ok_rows, stopped_cells  # noqa: E402
from benchmarks._common import launch  # noqa: E402
from search_spaces import HERE as SPACES  # noqa: E402
from study.adaptive import EPOCH, AdaptiveSettings, CellScheduler  # noqa: E402

GOAL = 0.35  # the twin's share of the grid's trial-seconds for the same recommendation
TOP = 3


def space_tables(args: argparse.Namespace) -> tuple[dict, dict]:
    """The grid (the space narrowed to the chosen optimizers, lrs, seeds and epochs) and its twin."""
    grid = tomllib.loads((SPACES / f"{args.space}.toml").read_text())
    grid.pop("description", None)  # prose that changes with the project, not the study: a finished grid stays readable
    for key, value in (("optimizers", args.optimizers), ("lrs", args.lrs), ("seeds", args.seeds)):
        if value:
            grid[key] = value
    if args.optimizers and "lr_by_optimizer" in grid:  # a space of an lr per optimizer: those of the chosen
        grid["lr_by_optimizer"] = {name: lr for name, lr in grid["lr_by_optimizer"].items() if name in args.optimizers}
    grid["fixed"] = {**grid.get("fixed", {}), "epochs": args.epochs, "data_size": args.data_size}
    adaptive = {"scheduler": args.scheduler, "grace_period": args.grace_period}
    if args.scheduler == "asha":
        adaptive["reduction_factor"] = args.reduction_factor
    return grid, {**grid, "adaptive": adaptive}


def twin_name(space: str, adaptive: dict) -> str:
    """The adaptive twin's study name, from its settings: twins of several grace periods (or
    schedulers) share one workdir and its grid."""
    return f"{space}-" + "-".join(f"{key}{value:g}" if isinstance(value, (int, float)) else str(value)
                                  for key, value in adaptive.items())


def space_text(table: dict, flags: list[str]) -> str:
    """A study's space file, its further study.launch flags in its first line (a YAML comment)."""
    return f"# study.launch flags: {' '.join(flags)}\n" + yaml.safe_dump(table, sort_keys=False)


def run_or_read(table: dict, name: str, workdir: Path, flags: list[str]) -> Path:
    """The study folder of `table` run as `name` under `workdir` with `flags`, run unless it finished
    there before on the same space and flags (a finished study of others is refused, not read)."""
    folder = workdir / "studies" / name
    manifest = folder / "manifest.json"
    space, text = workdir / f"{name}.yaml", space_text(table, flags)
    if manifest.is_file() and "finished" in json.loads(manifest.read_text()):
        if not space.is_file() or space.read_text() != text:
            raise SystemExit(f"{folder} holds a finished study of another space or flags than {name}'s (see "
                             f"{space}): give another --workdir")
        print(f"{name}: finished before, read from {folder}", flush=True)
        return folder
    space.write_text(text)
    run = launch(space, workdir / "studies", name, flags)
    if run.returncode != 0:
        raise SystemExit(f"{name} failed (exit {run.returncode}); log {run.log}")
    print(f"{name}: {run.study_s:.0f} s study wall time; log {run.log}", flush=True)
    return folder


def cell_errors(scores: pd.DataFrame) -> pd.DataFrame:
    """Per group of test sets and finished (optimizer, lr) cell: the seed-mean error (`value`)."""
    rows = first_order(scores)
    grouped, _ = group_scores(ok_rows(rows), groups_of_test_sets(rows))
    grouped = grouped.rename(columns={"test_set": "group"})
    return grouped.groupby(["group", "optimizer", "lr"], sort=False)["value"].mean().reset_index()


def top(cells: pd.DataFrame, scores: pd.DataFrame) -> dict[str, list[str]]:
    """Per group, the best `TOP` optimizers at their lr chosen on validation, as 'adam@0.001'."""
    chosen = at_chosen_lr(cells, chosen_lrs(first_order(scores)))
    return {group: [f"{r.optimizer}@{r.lr:g}" for r in part.nsmallest(TOP, "value").itertuples()]
            for group, part in chosen.groupby("group", sort=False)}


def winners(scores: pd.DataFrame) -> dict[str, str]:
    """Per group, the recommendation's best optimizer at its lr, as 'adam@0.001' (or why there is none)."""
    try:
        table = recommendation(scores)
    except AnalysisError as error:
        return {"(none)": str(error)}
    return {r.group: f"{r.best}@{r.best_lr:g}" for r in table.itertuples()}


def kendall(grid: pd.DataFrame, twin: pd.DataFrame, group: str) -> tuple[float, int]:
    both = grid[grid["group"] == group].merge(twin[twin["group"] == group], on=["optimizer", "lr"])
    if len(both) < 2:
        return float("nan"), len(both)
    return float(stats.kendalltau(both["value_x"], both["value_y"]).statistic), len(both)


def trial_seconds(scores: pd.DataFrame, column: str = "wall_time_s") -> float:
    """The sum over trials of `column`: wall time, training time (wall time less compiling) or steps."""
    return float(scores.drop_duplicates("trial_id")[column].sum())


def at_grid_pace(twin: pd.DataFrame, grid: pd.DataFrame, grid_curves: pd.DataFrame) -> float:
    """The twin's trial-seconds at the grid's pace: each twin trial timed by the grid's trial of the
    same cell and seed, which ran the same computation (the wall time of its epoch report at the
    twin's stop epoch; its whole wall time where the twin's trial finished). Free of the other load
    a shared machine put on one run and not the other."""
    keys = ["optimizer", "lr", "seed"]
    trials = twin.drop_duplicates("trial_id")[[*keys, "status", "stopped_at_epoch"]]
    whole = grid.drop_duplicates("trial_id").set_index(keys)["wall_time_s"]
    at_epoch = first_order(grid_curves).set_index([*keys, "step"])["wall_time_s"]
    return float(sum(at_epoch[(*cell, trial.stopped_at_epoch)] if trial.status == STOPPED else whole[cell]
                     for trial in trials.itertuples() for cell in [(trial.optimizer, trial.lr, trial.seed)]))


def comparison(grid: pd.DataFrame, twin: pd.DataFrame) -> pd.DataFrame:
    grid_cells, twin_cells = cell_errors(grid), cell_errors(twin)
    grid_best, twin_best = winners(grid), winners(twin)
    grid_top, twin_top = top(grid_cells, grid), top(twin_cells, twin)
    rows = []
    for group in grid_best:
        tau, n = kendall(grid_cells, twin_cells, group)
        rows.append({"group": group, "grid best": grid_best[group], "adaptive best": twin_best.get(group, "-"),
                     "same best": grid_best[group] == twin_best.get(group),
                     "grid top 3": ", ".join(grid_top.get(group, [])),
                     "adaptive top 3": ", ".join(twin_top.get(group, [])),
                     "same top 3": grid_top.get(group) == twin_top.get(group),
                     "tau": round(tau, 2), "cells in both": n})
    return pd.DataFrame(rows)


def cost_lines(grid: pd.DataFrame, twin: pd.DataFrame, grid_curves: pd.DataFrame, gpus_per_trial: float) -> list[str]:
    grid_s, twin_s = trial_seconds(grid), trial_seconds(twin)
    paced = at_grid_pace(twin, grid, grid_curves)
    lines = [f"trial-seconds: grid {grid_s:.0f}, adaptive {twin_s:.0f}: the adaptive study used {twin_s / grid_s:.1%} "
             f"(goal <= {GOAL:.0%})",
             f"at the grid's pace (each adaptive trial timed by the grid's trial of its cell and seed): {paced:.0f}, "
             f"{paced / grid_s:.1%}",
             f"training seconds (wall time less the one-time compile, paid by each study's first trials): grid "
             f"{trial_seconds(grid, 'training_time_s'):.0f}, adaptive {trial_seconds(twin, 'training_time_s'):.0f}: "
             f"{trial_seconds(twin, 'training_time_s') / trial_seconds(grid, 'training_time_s'):.1%}",
             f"optimizer steps (the share a load-free machine would approach, fixed costs aside): grid "
             f"{trial_seconds(grid, 'steps'):.0f}, adaptive {trial_seconds(twin, 'steps'):.0f}: "
             f"{trial_seconds(twin, 'steps') / trial_seconds(grid, 'steps'):.1%}"]
    if gpus_per_trial:
        lines.append(f"GPU-hours: grid {grid_s * gpus_per_trial / 3600:.3f}, "
                     f"adaptive {twin_s * gpus_per_trial / 3600:.3f}")
    trials = twin.drop_duplicates("trial_id")
    lines.append(f"adaptive: {(trials['status'] == STOPPED).sum()} of {len(trials)} trials stopped early")
    cells = stopped_cells(twin)
    for optimizer in dict.fromkeys(cells["optimizer"]):
        mine = cells[cells["optimizer"] == optimizer]
        lines.append(f"  stopped cells of {optimizer}: "
                     + ", ".join(f"lr {r.lr:g} at epoch {r.stopped_at_epoch:g}" for r in mine.itertuples()))
    return lines


def replayed_epochs(curves: pd.DataFrame, adaptive: dict, epochs: int, workers: int) -> dict[tuple, float]:
    """The epoch each (optimizer, lr) cell would reach in the adaptive twin, replayed from the grid's
    own curves through study.adaptive.CellScheduler: the cells' first seeds run `workers` at a time
    in the grid's order, each epoch reported when it was in the grid (after its trial's start), each
    cell stopped where the scheduler says. The twin's share at another concurrency, for nothing."""
    curves = first_order(curves)  # an L-BFGS stage's iterations are no epochs
    first = curves[curves["seed"] == curves["seed"].min()].sort_values(["trial_id", "step"])
    cells = {cell: part.set_index("step")[["wall_time_s", "val_force_rmse_mev_a"]]
             for cell, part in first.groupby(["optimizer", "lr"], sort=False)}
    settings = AdaptiveSettings(**adaptive)
    scheduler = CellScheduler(settings, epochs)
    trials = {cell: Trial("replay", config={"optimizer": cell[0], "lr": cell[1]}, stub=True) for cell in cells}
    for trial in trials.values():
        scheduler.on_trial_add(None, trial)
    waiting, events, started, reached = list(cells), [], {}, {}

    def report(cell: tuple, epoch: float) -> None:
        heapq.heappush(events, (started[cell] + cells[cell].at[epoch, "wall_time_s"], epoch, len(events), cell))

    def start_next(at: float) -> None:
        if waiting:
            cell = waiting.pop(0)
            started[cell] = at
            report(cell, cells[cell].index[0])

    for _ in range(workers):
        start_next(0.0)
    while events:
        at, epoch, _, cell = heapq.heappop(events)
        result = {EPOCH: epoch, settings.metric: cells[cell].at[epoch, settings.metric]}
        later = cells[cell].index[cells[cell].index > epoch]
        if scheduler.on_trial_result(None, trials[cell], result) == TrialScheduler.STOP or later.empty:
            reached[cell] = epoch
            start_next(at)
        else:
            report(cell, later[0])
    return reached


def replay_lines(curves: pd.DataFrame, adaptive: dict, epochs: int) -> list[str]:
    """The twin replayed from the grid's curves (`replayed_epochs`) with 2 trials at a time (this
    machine's) and with every cell at once (a cluster with a slot per cell)."""
    cells = curves.groupby(["optimizer", "lr"]).ngroups
    lines = ["replayed from the grid's curves (its first seed's validation through the same scheduler; "
             "the other seeds stop with their cell):"]
    for workers in (2, cells):
        reached = replayed_epochs(curves, adaptive, epochs, workers)
        kept = ", ".join(f"{optimizer}@{lr:g}" for (optimizer, lr), epoch in reached.items() if epoch >= epochs)
        lines.append(f"  {workers} trials at a time: {sum(reached.values()) / (cells * epochs):.1%} of the grid's "
                     f"trial-epochs; finished: {kept}")
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="lr_ablation", help="a named grid space")
    parser.add_argument("--optimizers", type=lambda s: s.split(","), default=None)
    parser.add_argument("--lrs", type=lambda s: [float(x) for x in s.split(",")], default=None)
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--data-size", default="full")
    parser.add_argument("--scheduler", default="asha")
    parser.add_argument("--grace-period", type=float, default=1, help="epochs")
    parser.add_argument("--reduction-factor", type=float, default=3)
    parser.add_argument("--gpus-per-trial", type=float, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("extra", nargs="*", help="further study.launch arguments (after --)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="optistudy-cost-"))
    workdir.mkdir(parents=True, exist_ok=True)
    flags = [*(["--gpus-per-trial", str(args.gpus_per_trial)] if args.gpus_per_trial else []), *args.extra]
    grid_table, twin_table = space_tables(args)
    grid_folder = run_or_read(grid_table, f"{args.space}-grid", workdir, flags)
    grid = load(grid_folder, table="scores")
    twin_folder = run_or_read(twin_table, twin_name(args.space, twin_table["adaptive"]), workdir, flags)
    twin = load(twin_folder, table="scores")
    axes = " x ".join(f"{len(grid_table[axis])} {axis}" for axis in ("optimizers", "lrs", "protocols", "seeds")
                      if axis in grid_table)
    print(f"\n{args.space}: {axes} ({grid['trial_id'].nunique()} trials), {args.epochs} epochs, {args.data_size} "
          f"data, {' '.join(flags) or 'no further flags'}; adaptive: {twin_table['adaptive']}")
    print(comparison(grid, twin).to_string(index=False))
    grid_curves = load(grid_folder, table="curves")
    print("\n".join(cost_lines(grid, twin, grid_curves, args.gpus_per_trial)))
    print("\n".join(replay_lines(grid_curves, twin_table["adaptive"], args.epochs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
