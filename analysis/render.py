"""Formatting tables for people: "mean (std)" cells with the best two marked, rendered as
plain text, Markdown, CSV or LaTeX (booktabs). Pure: functions return strings, the CLI writes them.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

import pandas as pd
from pandas.api.types import is_float_dtype

from analysis.columns import require_columns
from analysis.errors import AnalysisError

FORMATS = ("text", "markdown", "csv", "latex")
# (best, second best) per format; Markdown has no underline, so the second best is in italics.
MARKS = {
    "text": ("{} **", "{} *"),
    "markdown": ("**{}**", "*{}*"),
    "latex": (r"\textbf{{{}}}", r"\underline{{{}}}"),
    "csv": ("{}", "{}"),
}
# Columns that count seeds: shown as whole numbers ('inf' where no number of seeds would do).
COUNT_COLUMNS = ("seeds_needed", "extra_seeds")
MARK_LEGEND = {"text": "** best, * second best", "markdown": "**bold** best, *italic* second best",
               "latex": r"\textbf{bold} best, \underline{underlined} second best", "csv": ""}


def format_summary(summary: pd.DataFrame, metric: str, *, by: Sequence[str] = ("optimizer",),
                   conditions: Sequence[str] = ("test_set",), fmt: str = "text", digits: int = 2) -> pd.DataFrame:
    """Wide table of `summary_table` output: one row per `by`, one column per condition, cells
    "mean (std)" of `metric`, the best two per condition marked as `fmt` does it (see MARKS).
    Groups without a value of `metric` (an energy-only test set in a force table) are left out,
    so a condition no row measured has no column."""
    check_format(fmt)
    require_columns(summary, [*by, *conditions, *(f"{metric}_{s}" for s in ("mean", "std", "rank"))], "the summary")
    measured = summary[summary[f"{metric}_mean"].notna()]
    if measured.empty:
        raise AnalysisError(f"the summary holds no value of {metric}")
    cells = [mark(mean_std(m, s, digits), r, fmt) for m, s, r in
             zip(measured[f"{metric}_mean"], measured[f"{metric}_std"], measured[f"{metric}_rank"])]
    return widen(measured[[*by, *conditions]].assign(cell=cells), list(by), list(conditions))


def mean_std(mean: float, std: float, digits: int = 2) -> str:
    """'12.34 (0.56)'; the std is left out where it is undefined (a single seed)."""
    if math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({std:.{digits}f})"


def mark(cell: str, rank, fmt: str) -> str:
    """`cell` marked as best (rank 1) or second best (rank 2) in `fmt`; other ranks unchanged."""
    if pd.isna(rank) or rank > 2:
        return cell
    return MARKS[fmt][int(rank) - 1].format(cell)


def widen(cells: pd.DataFrame, by: list[str], conditions: list[str]) -> pd.DataFrame:
    """Pivot the `cell` column to rows `by` x columns `conditions`, keeping order of first appearance."""
    if not conditions:
        return cells.set_index(by)[["cell"]]
    wide = cells.pivot(index=by, columns=conditions, values="cell")
    wide = wide.reindex(index=_ordered_index(cells, by), columns=_ordered_index(cells, conditions))
    wide.columns = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in wide.columns]
    return wide.fillna("-")


def _ordered_index(frame: pd.DataFrame, columns: list[str]) -> pd.Index:
    index = pd.MultiIndex.from_frame(frame[columns].drop_duplicates())
    return index if len(columns) > 1 else index.get_level_values(0)


def render(frame: pd.DataFrame, fmt: str = "text") -> str:
    """`frame` as a `fmt` string; a named index becomes the leading column(s).

    Floats are shown with 2 decimals (3 significant digits below 1), counts of seeds as whole
    numbers, except in CSV, which keeps full precision. LaTeX escapes _ % & # $ but keeps markup such as \\textbf{}.
    """
    check_format(fmt)
    table = frame.reset_index() if any(name is not None for name in frame.index.names) else frame
    table = table if fmt == "csv" else with_whole_counts(table)
    header = [str(c) for c in table.columns]
    show = repr_cell if fmt == "csv" else display_cell
    rows = [[show(v) for v in row] for row in table.itertuples(index=False)]
    return _RENDERERS[fmt](header, rows)


def with_whole_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its float `COUNT_COLUMNS` as text for people: '128488', 'inf', '' where missing."""
    counts = [c for c in COUNT_COLUMNS if c in frame and is_float_dtype(frame[c])]
    return frame.assign(**{column: frame[column].map(_whole) for column in counts}) if counts else frame


def _whole(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.0f}" if math.isfinite(value) else str(value)


def display_cell(value) -> str:
    """A cell for people: '' for missing, 2 decimals, or 3 significant digits for small floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    return str(value)


def repr_cell(value) -> str:
    """A cell for machines: '' for missing, else full precision."""
    return "" if display_cell(value) == "" else str(value)


def check_format(fmt: str) -> None:
    """Raise unless `fmt` is one of FORMATS."""
    if fmt not in FORMATS:
        raise AnalysisError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(map(len, column)) for column in zip(header, *rows)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(c.replace("|", r"\|") for c in line) + " |" for line in lines)


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    return buffer.getvalue().rstrip("\n")


def _latex(header: list[str], rows: list[list[str]]) -> str:
    body = [r"\toprule", _latex_row(header), r"\midrule", *map(_latex_row, rows), r"\bottomrule"]
    return "\n".join([rf"\begin{{tabular}}{{{'l' * len(header)}}}", *body, r"\end{tabular}"])


def _latex_row(cells: list[str]) -> str:
    return " & ".join(map(latex_escape, cells)) + r" \\"


def latex_escape(text: str) -> str:
    """`text` with LaTeX's special characters _ % & # $ escaped (backslashes and braces kept)."""
    for character in "_%&#$":
        text = text.replace(character, "\\" + character)
    return text


_RENDERERS = {"text": _text, "markdown": _markdown, "csv": _csv, "latex": _latex}
