"""`table`: optimizer x test set, mean (std) over seeds, the best two marked (the paper's Tables
1, 2 and C1)."""

from __future__ import annotations

import argparse

import pandas as pd

from analysis.commands.base import DIGITS, STUDIES, Command, Output, argument, filters, names
from analysis.commands.output import load_rows, summary_output
from analysis.tables import TABLE_METRICS, compared_within, summary_table, table_metrics


def run(args: argparse.Namespace) -> Output:
    scores = load_rows(args, "scores")
    metrics = args.metric or table_metrics(scores)
    summary = summary_table(scores, metrics, by=args.by)
    return summary_output(summary, metrics, args.by, args, "table", marks_legend(summary, args.by))


def marks_legend(summary: pd.DataFrame, by: list[str]) -> str:
    """Where rows are grouped by more than the test set, which rows the marks compare."""
    within = compared_within(summary, by)
    return f" within each {', '.join(within)}" if within else ""


COMMAND = Command(
    "table", "optimizer x test set, mean (std) over seeds, best two marked (Tables 1, 2, C1)",
    (*STUDIES, *filters("first_order"),
     argument("--metric", type=names, help="comma-separated metric columns (default: those of "
              f"{', '.join(TABLE_METRICS)} the study holds)"),
     argument("--by", type=names, default=["optimizer"],
              help="comma-separated row keys, e.g. optimizer,lr for the learning-rate ablation; the best two are "
                   "marked among the first key's values within each value of the others"),
     DIGITS),
    run,
    examples=("results/lr_ablation --lr 1e-3 --format markdown",
              "'results/*' --by optimizer,lr --stage lbfgs",
              "results/method_benchmark --by method,optimizer,lr"),
)
