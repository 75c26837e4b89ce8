"""`properties`: physical properties of the fine-tuned models (an evaluate stage): optimizer x
property, MD survival and frequency-error charts, and the force-RMSE ranking against a property's."""

from __future__ import annotations

import argparse

import pandas as pd

from analysis.commands.base import STUDIES, Command, Output, argument, filters
from analysis.commands.output import chart_files, load_rows, sections, table_files
from analysis.properties import (FREQUENCY_PROPERTIES, frequency_error_chart, md_survival_chart, property_table,
                                 ranking_agreement, rmse_property_chart, rmse_property_front)
from analysis.render import MARK_LEGEND

# chart file -> (its builder, the properties of which one must be present)
CHARTS = {"md_survival": (md_survival_chart, {"md_survival_time"}),
          "frequency_error": (frequency_error_chart, set(FREQUENCY_PROPERTIES))}


def run(args: argparse.Namespace) -> Output:
    """optimizer x property, mean (std) over seeds, the two closest to the reference marked; with
    --property, whether the force-RMSE ranking and that property's agree, and their front."""
    rows = load_rows(args, "properties")
    table = property_table(rows, quantity=args.quantity, fmt=args.format)
    heading = (f"Physical properties: {args.quantity}, mean (std) over seeds; {MARK_LEGEND[args.format]} "
               "(closest to the reference)")
    parts, files = [(heading, table)], table_files("properties", table)
    present_properties = set(rows["property"])
    for name, (build, needs) in CHARTS.items():
        if needs & present_properties:
            files |= chart_files(name, build(rows))
    if args.property:
        part, chart = rmse_against_property(args, rows)
        parts.append(part)
        files |= chart_files("rmse_vs_property", chart)
    return Output(sections(args.format, parts), files)


def rmse_against_property(args: argparse.Namespace, rows: pd.DataFrame):
    """The Pareto front of force RMSE against --property's error, titled with the rank agreement, and its chart."""
    scores = load_rows(args, "scores")
    rho = ranking_agreement(rows, scores, args.property, test_set=args.rmse_test_set)
    front = rmse_property_front(rows, scores, args.property, test_set=args.rmse_test_set)
    heading = (f"Force RMSE on {args.rmse_test_set} vs |error| of {args.property}: Pareto front; "
               f"Spearman's rho of the two rankings over optimizers {rho:.2f}")
    return (heading, front), rmse_property_chart(rows, scores, args.property, test_set=args.rmse_test_set)


COMMAND = Command(
    "properties", "physical properties of the models (an evaluate stage): optimizer x property, MD survival and "
                  "frequency-error charts, RMSE vs a property",
    (*STUDIES, *filters(None, with_test_set=False),
     argument("--quantity", choices=("value", "abs_error", "error"), default="value",
              help="what the table shows (default: %(default)s); marks go to the closest to the reference"),
     argument("--property", help="also compare the force-RMSE ranking with this property's, e.g. vib_frequency_mae"),
     argument("--rmse-test-set", default="val",
              help="the scores' test set for --property (default: %(default)s)")),
    run,
    examples=("results/properties --property vib_frequency_mae --out figures/",),
)
