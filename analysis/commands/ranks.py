"""`ranks`: rank stability over seeds: each optimizer's rank per seed and test set, and Kendall's
tau between two seeds' orderings."""

from __future__ import annotations

import argparse

from analysis.charts import title
from analysis.commands.base import METRIC, STUDIES, Command, Output, argument, filters
from analysis.commands.output import chosen_note, load_rows, lr_choice, lr_choice_flags, sections, table_files
from analysis.render import render
from analysis.stats import LR_CHOICES, STABLE_TAU, rank_stability, rank_summary, ranking_is_stable, seed_ranks


def run(args: argparse.Namespace) -> Output:
    scores = load_rows(args, "scores")
    choice = lr_choice(args)
    seed_rank = seed_ranks(scores, args.metric, lr_choice=choice)
    taus = rank_stability(scores, args.metric, threshold=args.threshold, lr_choice=choice)
    summary = rank_summary(seed_rank)
    stable = ranking_is_stable(taus, args.threshold)
    verdict = (f"ranking {'stable' if stable else 'NOT stable'}: mean Kendall tau {taus['tau'].mean():.2f} over "
               f"{taus['tau'].notna().sum()} seed pairs ({'>=' if stable else '<'} {args.threshold:g}); "
               f"{int((~taus['stable']).sum())} pairs below")
    parts = [(f"{title(args.metric)}: each optimizer's rank over seeds and test sets (1 = lowest error; holds: "
              f"share at its most frequent rank), {LR_CHOICES[choice]}", summary),
             ("Kendall's tau between two seeds' orderings", taus)]
    return Output(sections(args.format, parts, chosen_note(scores, choice) + verdict),
                  {"ranks.csv": render(seed_rank, "csv"), **table_files("rank_summary", summary),
                   **table_files("kendall_tau", taus)})


COMMAND = Command(
    "ranks", "rank stability: ranks per seed and test set, Kendall's tau between seeds, each optimizer at its lr "
             "chosen on validation",
    (*STUDIES, *filters("first_order"), METRIC,
     argument("--threshold", type=float, default=STABLE_TAU,
              help="mean Kendall tau below which the ranking is flagged unstable (default: %(default)s)"),
     lr_choice_flags("by_lr", "each_lr")),
    run,
    examples=("results/lr_ablation",),
)
