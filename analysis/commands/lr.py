"""`lr`: learning-rate sensitivity: each optimizer's lr chosen on validation, its error over the
learning rates it ran (the best two lrs of each optimizer marked per test set), and how much the
lr matters there."""

from __future__ import annotations

import argparse

import pandas as pd

from analysis.charts import lr_sensitivity_chart, title
from analysis.columns import distinct
from analysis.commands.base import DIGITS, METRIC, STUDIES, Command, Output, filters
from analysis.commands.output import chart_files, chosen_note, load_rows, sections, summary_output, table_files
from analysis.load import select
from analysis.lr_sensitivity import lr_sensitivity
from analysis.tables import summary_table

MARKS_LEGEND = " lr of each optimizer"


def run(args: argparse.Namespace) -> Output:
    every_test_set = load_rows(args, "scores", skip=("test_set",))  # the validation rows choose each lr
    scores = select(every_test_set, test_set=args.test_set) if args.test_set else every_test_set
    output = summary_output(lrs_of_each_optimizer(scores, args.metric), [args.metric], ["optimizer", "lr"], args,
                            "lr", MARKS_LEGEND)
    sensitivity = lr_sensitivity(every_test_set, args.metric)
    if args.test_set:
        sensitivity = sensitivity[sensitivity["test_set"].isin(args.test_set)]
    heading = (f"{title(args.metric)}: seed means at the lr chosen on validation and at the best and the worst lr "
               "of each optimizer; spread_pct: worst over best, chosen_loss_pct: chosen over best (%); failed_at: "
               "lrs where a trial failed")
    if args.format != "csv":
        output.text = "\n\n".join([output.text, sections(args.format, [(heading, sensitivity)],
                                                          chosen_note(every_test_set, "validation").strip())])
    output.files |= {**table_files("lr_sensitivity", sensitivity),
                     **chart_files("lr", lr_sensitivity_chart(scores, args.metric))}
    return output


def lrs_of_each_optimizer(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`summary_table` rows per (optimizer, lr), the lrs of each optimizer ranked against each other."""
    summary = summary_table(scores, [metric], by=["lr", "optimizer"])
    first_seen = {name: order for order, name in enumerate(distinct(summary["optimizer"]))}
    ordered = summary.sort_values("optimizer", key=lambda names: names.map(first_seen), kind="stable")
    return ordered[["optimizer", *(c for c in ordered.columns if c != "optimizer")]]


COMMAND = Command(
    "lr", "learning-rate sensitivity: each optimizer's lr chosen on validation, its error over the lrs it ran "
          "(mean (std) over seeds, its best two lrs marked) and how much the lr matters per test set",
    (*STUDIES, *filters("first_order"), METRIC, DIGITS),
    run,
    examples=("results/lr_ablation --test-set val,1200K",),
)
