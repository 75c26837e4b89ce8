"""`compare`: each optimizer against a baseline over paired seeds, with a verdict in honest words,
and the best two per test set with the seeds that would settle them."""

from __future__ import annotations

import argparse

import pandas as pd

from analysis.charts import title
from analysis.commands.base import STUDIES, Command, Output, argument, filters
from analysis.commands.output import chosen_note, load_rows, lr_choice, lr_choice_flags, sections, table_files
from analysis.stats import ALPHA, LR_CHOICES, POWER, paired_comparison, seeds_needed
from analysis.verdicts import verdict_note


def run(args: argparse.Namespace) -> Output:
    scores = load_rows(args, "scores")
    choice = lr_choice(args)
    rows = paired_comparison(scores, baseline=args.baseline, metric=args.metric, lr_choice=choice).drop(
        columns="metric")
    best = seeds_needed(scores, args.metric, lr_choice=choice)
    heading = (f"{title(args.metric)}: optimizer - baseline over paired seeds (negative: lower error), "
               f"{LR_CHOICES[choice]}")
    parts = [(heading, rows), (f"The best two per test set: best - runner-up, and the paired seeds that would settle "
                               f"the unsettled with {POWER:.0%} power at level {ALPHA:g}", best)]
    return Output(sections(args.format, parts, chosen_note(scores, choice) + compare_note(rows, best)),
                  {**table_files("compare", rows), **table_files("seeds_needed", best)})


def compare_note(rows: pd.DataFrame, best: pd.DataFrame) -> str:
    """How to read `compare`'s two tables (each its own family of comparisons for Holm's correction)."""
    return f"{verdict_note(rows)} The best-two table is a family of its own ({len(best)} of them)."


COMMAND = Command(
    "compare", "paired comparison with a baseline over seeds, each optimizer at its lr chosen on validation: "
               "difference, range or bootstrap interval, exact sign-flip p with Holm's correction and a verdict",
    (*STUDIES, *filters("first_order"),
     argument("--baseline", default="adam", help="baseline optimizer (default: %(default)s); with --each-lr an "
              "optimizer@lr such as adam@0.001"),
     argument("--metric", default="force_rmse_mev_a", help="metric column, lower is better (default: %(default)s)"),
     lr_choice_flags("by_lr", "each_lr")),
    run,
    examples=("results/lr_ablation --baseline adam --test-set 1200K",),
)
