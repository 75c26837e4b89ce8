"""`improvement`: relative improvement (%) of each optimizer over a baseline optimizer, per test set."""

from __future__ import annotations

import argparse

from analysis.charts import improvement_chart, title
from analysis.commands.base import METRIC, STUDIES, Command, Output, argument, filters
from analysis.commands.output import chart_files, load_rows, table_files, titled
from analysis.render import render
from analysis.tables import improvement_vs


def run(args: argparse.Namespace) -> Output:
    relative = improvement_vs(load_rows(args, "scores"), baseline=args.baseline, metric=args.metric)
    rows = relative[["optimizer", "test_set", "mean", "baseline_mean", "improvement_pct"]]
    heading = f"{title(args.metric)}: improvement over {args.baseline} (%), seed means; positive is better"
    return Output(titled(heading, render(rows, args.format), args.format),
                  {**table_files("improvement", rows), **chart_files("improvement", improvement_chart(relative))})


COMMAND = Command(
    "improvement", "relative improvement (%) over a baseline optimizer per test set",
    (*STUDIES, *filters("first_order"),
     argument("--baseline", default="adam", help="baseline optimizer (default: %(default)s)"),
     METRIC),
    run,
    examples=("results/lr_ablation --baseline adam --test-set 300K,1200K",),
)
