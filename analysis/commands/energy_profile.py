"""`energy-profile`: a path or scan's predicted against reference relative energies per curve, and
their errors per optimizer."""

from __future__ import annotations

import argparse

from analysis.commands.base import STUDIES, Command, Output, argument, filters
from analysis.commands.output import chart_files, load_rows, sections, table_files
from analysis.energy_profile import (at_chosen_lrs, curve_lengths, energy_profile_chart, energy_profiles,
                                     profile_summary, profile_test_set)
from analysis.load import select


def run(args: argparse.Namespace) -> Output:
    scores = load_rows(args, "scores", skip=("test_set",))  # the validation rows choose each optimizer's lr
    test_set = profile_test_set(scores, args.test_set)
    rows = select(scores, test_set=test_set)
    summary, profiles = profile_summary(rows), energy_profiles(rows)
    shown, choice = (profiles, "") if args.all_lrs or args.lr else at_chosen_lrs(profiles, scores)
    heading = f"Energy profile of {test_set}: relative-energy errors (meV), mean over seeds"
    note = f"curves: {curve_lengths(profiles)}" + (f"; chart: {choice}" if choice else "")
    return Output(sections(args.format, [(heading, summary)], note),
                  {**table_files("energy_profile", summary),
                   **chart_files("energy_profile", energy_profile_chart(shown, subtitle=choice))})


COMMAND = Command(
    "energy-profile", "a path or scan: predicted vs reference relative energies per curve, and their errors per "
                      "optimizer",
    (*STUDIES, *filters("first_order"),
     argument("--all-lrs", action="store_true", help="chart every learning rate, one panel each (default: each "
              "optimizer at its lr with the lowest validation error; --lr picks lrs)")),
    run,
    examples=("results/lr_ablation --test-set dihedral --out figures/",),
)
