"""`curves`: learning curves per trial (validation error over epochs or wall time), coloured by
optimizer, with each trial's last and best value."""

from __future__ import annotations

import argparse

from analysis.charts import curves_chart, title
from analysis.commands.base import STUDIES, Command, Output, argument, filters
from analysis.commands.output import chart_files, load_rows, table_files, titled
from analysis.render import render
from analysis.tables import curve_summary, validation_curve

CURVE_X = {"step": "step", "wall": "wall_time_s"}  # --x choice -> the curves' column


def run(args: argparse.Namespace) -> Output:
    data = load_rows(args, "curves")
    y = args.y or validation_curve(data)
    rows = curve_summary(data, y)
    heading = f"{title(y)} at the last step and at best, per trial"
    chart = curves_chart(data, y, x=CURVE_X[args.x], log_y=not args.linear_y)
    return Output(titled(heading, render(rows, args.format), args.format),
                  {**table_files("curves", rows), **chart_files("curves", chart)})


COMMAND = Command(
    "curves", "learning curves per trial, coloured by optimizer",
    (*STUDIES, *filters(None, with_test_set=False),
     argument("--y", help="curve column (default: val_force_rmse_mev_a, or val_energy_rmse_mev_atom where the "
              "validation set has no forces)"),
     argument("--linear-y", action="store_true", help="linear instead of log y axis in the chart"),
     argument("--x", choices=CURVE_X, default="step",
              help="chart x axis: step (epoch or L-BFGS iteration) or wall (seconds since the trial started)")),
    run,
    examples=("results/lr_ablation --optimizer adam,lamb --out figures/", "results/lr_ablation --x wall"),
)
