"""What commands share between reading their rows and returning their `Output`: the filtered
load, titled tables in each format, the files --out writes, and the choice of learning rates."""

from __future__ import annotations

import argparse
import functools

import altair as alt
import pandas as pd

from analysis.charts import title
from analysis.commands.base import Argument, OneOf, Output, argument
from analysis.load import load
from analysis.recommend import chosen_lr_line
from analysis.render import MARK_LEGEND, format_summary, render
from analysis.stats import LR_CHOICES, chosen_lrs

FILE_FORMATS = {"csv": "csv", "markdown": "md", "latex": "tex"}
FILTERS = ("stage", "optimizer", "lr", "test_set")


def load_rows(args: argparse.Namespace, table_name: str, skip: tuple[str, ...] = ()) -> pd.DataFrame:
    """The `table_name` rows of the studies, filtered by those of `FILTERS` given (but `skip`)."""
    given = {name: getattr(args, name, None) for name in FILTERS if name not in skip}
    filters = {name: value for name, value in given.items() if value is not None}
    return load(*args.studies, table=table_name, **filters)


def titled(heading: str, text: str, fmt: str) -> str:
    """`text` under `heading` (a LaTeX comment in LaTeX); CSV stays a bare table."""
    prefix = {"text": "", "markdown": "", "latex": "% ", "csv": None}[fmt]
    return text if prefix is None else f"{prefix}{heading}\n{text}"


def sections(fmt: str, parts: list[tuple[str, pd.DataFrame]], note: str = "") -> str:
    """Titled tables and a closing note in `fmt`; CSV gets the first table alone (machine-readable)."""
    if fmt == "csv":
        return render(parts[0][1], fmt)
    tables = [titled(heading, render(frame, fmt), fmt) for heading, frame in parts if not frame.empty]
    notes = ["\n".join(("% " if fmt == "latex" else "") + line for line in note.splitlines())] if note else []
    return "\n\n".join([*tables, *notes])


def table_files(name: str, frame: pd.DataFrame) -> dict[str, str]:
    """`frame` as name.csv, name.md and name.tex."""
    return {f"{name}.{ext}": render(frame, fmt) for fmt, ext in FILE_FORMATS.items()}


def chart_files(name: str, chart: alt.TopLevelMixin) -> dict[str, alt.TopLevelMixin]:
    """`chart` as name.html and name.png."""
    return {f"{name}.html": chart, f"{name}.png": chart}


def summary_output(summary: pd.DataFrame, metrics: list[str], by: list[str], args: argparse.Namespace, stem: str,
                   legend: str = "") -> Output:
    """The tidy summary as CSV, and per metric the marked `by` x test set table as text, md and tex;
    `legend` says what the marks compare where it is not the first `by` column."""
    files = {f"{stem}.csv": render(summary, "csv")}
    parts = []
    for metric in metrics:
        wide = functools.partial(format_summary, summary, metric, by=by, digits=args.digits)
        files |= {f"{stem}_{metric}.{FILE_FORMATS[fmt]}": render(wide(fmt=fmt), fmt) for fmt in ("markdown", "latex")}
        heading = f"{title(metric)}: mean (std) over seeds; {MARK_LEGEND[args.format]}{legend}"
        parts.append(titled(heading, render(wide(fmt=args.format), args.format), args.format))
    return Output(files[f"{stem}.csv"] if args.format == "csv" else "\n\n".join(parts), files)


def lr_choice_flags(*flags: str) -> OneOf:
    """Mutually exclusive alternatives (--by-lr, --each-lr) to choosing each optimizer's lr on
    validation (`LR_CHOICES`)."""
    helps = {"by_lr": f"{LR_CHOICES['same']} instead of {LR_CHOICES['validation']}",
             "each_lr": f"{LR_CHOICES['each']} (named optimizer@lr) instead of {LR_CHOICES['validation']}"}
    return OneOf(tuple(_flag(flag, helps[flag]) for flag in flags))


def _flag(dest: str, help_text: str) -> Argument:
    return argument(f"--{dest.replace('_', '-')}", dest=dest, action="store_true", help=help_text)


def lr_choice(args: argparse.Namespace) -> str:
    """The `LR_CHOICES` key the --by-lr / --each-lr flags select; 'validation' without either."""
    return "same" if getattr(args, "by_lr", False) else "each" if getattr(args, "each_lr", False) else "validation"


def chosen_note(scores: pd.DataFrame, choice: str) -> str:
    """Which lr validation chose for each optimizer (and where the grid may be too narrow); '' otherwise."""
    return chosen_lr_line(chosen_lrs(scores)) + "\n" if choice == "validation" else ""
