"""`lbfgs`: each optimizer's first-order result against the same trials after L-BFGS refinement
(the paper's Table 3)."""

from __future__ import annotations

import argparse

from analysis.charts import title
from analysis.commands.base import METRIC, STUDIES, Command, Output, filters
from analysis.commands.output import load_rows, table_files, titled
from analysis.render import render
from analysis.tables import lbfgs_gain


def run(args: argparse.Namespace) -> Output:
    gain = lbfgs_gain(load_rows(args, "scores"), metric=args.metric).drop(columns="metric")
    heading = f"{title(args.metric)}: first order (base) vs after L-BFGS (refined), seed means"
    return Output(titled(heading, render(gain, args.format), args.format), table_files("lbfgs", gain))


COMMAND = Command(
    "lbfgs", "first-order result vs after L-BFGS refinement (Table 3)",
    (*STUDIES, *filters(None, with_stage=False), METRIC),
    run,
    examples=("results/lbfgs_refinement",),
)
