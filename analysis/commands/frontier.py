"""`frontier`: the Pareto front of error vs cost, one panel per test set (the paper's Fig. 6)."""

from __future__ import annotations

import argparse

import pandas as pd

from analysis.charts import compared_rows, frontier_panels, fronts_left_out
from analysis.columns import present
from analysis.commands.base import STUDIES, Command, Output, argument, filters
from analysis.commands.output import chart_files, load_rows, sections, table_files
from analysis.frontier import pareto_front
from analysis.load import select
from analysis.tables import ok_rows, with_total_wall_time

IDENTITY = ("study", "trial_id", "optimizer", "lr", "seed", "stage", "test_set")


def run(args: argparse.Namespace) -> Output:
    scores = load_rows(args, "scores", skip=("stage",))  # parents of L-BFGS rows, for their total wall time
    if "total_wall_time_s" in (args.x, args.y):
        scores = with_total_wall_time(scores)
    scores = ok_rows(select(scores, stage=args.stage))
    measured = compared_rows(scores, args.y)
    front = pd.concat([pareto_front(rows, [args.x, args.y]).sort_values([args.x, args.y])
                       for _, rows in measured.groupby("test_set", sort=False)])
    rows = front[[*present(front, IDENTITY), args.x, args.y]]
    panels = front["test_set"].nunique()
    heading = (f"Pareto front{'s, one per test set' if panels > 1 else ''}: {len(front)} of {len(measured)} rows, "
               f"minimising {args.x} and {args.y}")
    chart = frontier_panels(scores, args.x, args.y, log_x=args.log_x, log_y=args.log_y)
    return Output(sections(args.format, [(heading, rows)], fronts_left_out(scores, args.y)),
                  {**table_files("frontier", rows), **chart_files("frontier", chart)})


COMMAND = Command(
    "frontier", "Pareto front of error vs cost on one test set (paper Fig. 6)",
    (*STUDIES, *filters("first_order"),
     argument("--x", default="wall_time_s", help="cost column, minimised (default: %(default)s, per stage; "
              "total_wall_time_s adds an L-BFGS trial's first-order time)"),
     argument("--y", default="force_rmse_mev_a", help="error column, minimised (default: %(default)s)"),
     argument("--log-x", action="store_true", help="log scale for x in the chart"),
     argument("--log-y", action="store_true", help="log scale for y in the chart")),
    run,
    examples=("results/lr_ablation --test-set 1200K --out figures/",),
)
