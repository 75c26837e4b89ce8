"""`sql`: a DuckDB query over the studies' tables (views `scores` and `curves`)."""

from __future__ import annotations

import argparse

from analysis.commands.base import STUDIES, Command, Output, argument
from analysis.commands.output import table_files
from analysis.render import render
from analysis.sql import sql


def run(args: argparse.Namespace) -> Output:
    result = sql(args.query, *args.studies)
    return Output(render(result, args.format), table_files("query", result))


COMMAND = Command(
    "sql", "SQL over DuckDB views `scores` and `curves` of the studies",
    (*STUDIES,
     argument("-q", "--query", required=True,
              help="e.g. \"SELECT optimizer, avg(force_rmse_mev_a) FROM scores GROUP BY 1\"")),
    run,
    examples=("results/lr_ablation -q \"SELECT optimizer, count(*) FROM scores GROUP BY 1\"",),
)
