"""`lr`: learning-rate sensitivity: the metric against lr per optimizer, mean (std) over seeds."""

from __future__ import annotations

import argparse

from analysis.charts import lr_sensitivity_chart
from analysis.commands.base import DIGITS, METRIC, STUDIES, Command, Output, filters
from analysis.commands.output import chart_files, load_rows, summary_output
from analysis.tables import summary_table


def run(args: argparse.Namespace) -> Output:
    scores, by = load_rows(args, "scores"), ["optimizer", "lr"]
    output = summary_output(summary_table(scores, [args.metric], by=by), [args.metric], by, args, "lr")
    output.files |= chart_files("lr", lr_sensitivity_chart(scores, args.metric))
    return output


COMMAND = Command(
    "lr", "learning-rate sensitivity: metric vs lr per optimizer, mean (std) over seeds",
    (*STUDIES, *filters("first_order"), METRIC, DIGITS),
    run,
    examples=("results/lr_ablation --test-set val,1200K",),
)
