"""`profiles`: performance profiles rho(tau) across test sets and studies, with their area score
(AlgoPerf)."""

from __future__ import annotations

import argparse

import numpy as np

from analysis.charts import performance_profile_chart, title
from analysis.commands.base import METRIC, STUDIES, Command, Output, above_one, argument, filters
from analysis.commands.output import (chart_files, chosen_note, load_rows, lr_choice, lr_choice_flags, sections,
                                      table_files)
from analysis.render import render
from analysis.stats import LR_CHOICES, performance_profiles, performance_ratios, profile_scores


def run(args: argparse.Namespace) -> Output:
    scores = load_rows(args, "scores")
    choice = lr_choice(args)
    profile = performance_profiles(scores, args.metric, taus=np.geomspace(1.0, args.max_tau, 101), lr_choice=choice)
    area = profile_scores(profile)
    ratios = performance_ratios(scores, args.metric, lr_choice=choice)
    heading = (f"{title(args.metric)}: performance profile area over {len(ratios)} problems (test set x study), "
               f"tau 1 to {args.max_tau:g} on a log scale; 1 = best on every problem; {LR_CHOICES[choice]}")
    parts = [(heading, area), (f"Ratio to the best seed mean per problem ({LR_CHOICES[choice]})", ratios)]
    return Output(sections(args.format, parts, chosen_note(scores, choice).strip()),
                  {"profiles.csv": render(profile, "csv"), **table_files("profile_scores", area),
                   **table_files("ratios", ratios), **chart_files("profiles", performance_profile_chart(profile))})


COMMAND = Command(
    "profiles", "performance profiles rho(tau) across test sets and studies, with their area score (AlgoPerf), "
                "each optimizer at its lr chosen on validation",
    (*STUDIES, *filters("first_order"), METRIC,
     argument("--max-tau", type=above_one, default=2.0, help="largest ratio to the best (default: %(default)s)"),
     lr_choice_flags("each_lr")),
    run,
    examples=("'results/*' --out figures/",),
)
