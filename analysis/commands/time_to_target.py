"""`time-to-target`: the first epoch and the seconds at which a trial's validation error reaches a
target, per optimizer and lr."""

from __future__ import annotations

import argparse

from analysis.commands.base import STUDIES, Command, Output, argument, filters
from analysis.commands.output import load_rows, sections, table_files
from analysis.stats import TARGET_FACTOR, target_summary, time_to_target
from analysis.tables import VALIDATION_CURVES, validation_curve


def run(args: argparse.Namespace) -> Output:
    data = load_rows(args, "curves")
    y = args.y or validation_curve(data)
    times = time_to_target(data, target=args.target, y=y)
    summary = target_summary(times)
    targets = ", ".join(f"{value:.2f}" for value in times["target"].unique())
    name, unit = VALIDATION_CURVES[y]
    target = (f"{args.target:g} {unit}" if args.target is not None
              else f"{TARGET_FACTOR:g} x the best final value ({targets} {unit})")
    heading = (f"{name} <= {target}: trials reaching it, median epoch, wall seconds since the "
               "trial started (setup and compile included) and training seconds (neither; NaN for studies that "
               "predate them) (inf: most never did)")
    return Output(sections(args.format, [(heading, summary)]),
                  {**table_files("time_to_target", times), **table_files("time_to_target_summary", summary)})


COMMAND = Command(
    "time-to-target", "first epoch and wall seconds at which validation force RMSE (or energy RMSE) reaches a "
                      "target, per optimizer and lr",
    (*STUDIES, *filters("first_order", with_test_set=False),
     argument("--target", type=float, help=f"in the curve's unit (default: {TARGET_FACTOR:g} x the best final "
              "value of the study)"),
     argument("--y", choices=VALIDATION_CURVES, help="the validation curve (default: force RMSE, or energy RMSE "
              "where the validation set has no forces)")),
    run,
    examples=("results/lr_ablation --target 25",),
)
