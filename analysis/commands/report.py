"""`report`: one self-contained HTML page of a study (what was run, its tables, interactive charts)."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.commands.base import Command, Output, argument
from analysis.report import report_html


def run(args: argparse.Namespace) -> Output:
    return Output(f"report of {args.study}", {"index.html": report_html(args.study)})


COMMAND = Command(
    "report", "one self-contained HTML page of a study: what was run, its tables and interactive charts",
    (argument("study", type=Path, metavar="STUDY", help="study folder (with manifest.json and results/)"),
     argument("--out", type=Path, required=True, metavar="DIR", help="folder to write index.html into")),
    run,
    examples=("results/lr_ablation --out results/lr_ablation/report",),
)
