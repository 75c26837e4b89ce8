"""Checks that a frame has the columns an analysis needs, with messages listing what it has."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from analysis.errors import AnalysisError


def numeric_columns(df: pd.DataFrame) -> list[str]:
    """Names of the columns holding numbers (booleans excluded)."""
    return [c for c in df.columns if is_numeric_dtype(df[c]) and not is_bool_dtype(df[c])]


def require_columns(df: pd.DataFrame, columns: Iterable[str], what: str = "the data") -> None:
    """Raise naming the first of `columns` missing from `df`, and the columns it does have."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise AnalysisError(f"{what} has no column {missing[0]!r}; columns: {', '.join(map(str, df.columns))}")


def require_numeric(df: pd.DataFrame, columns: Iterable[str]) -> None:
    """Raise naming the first of `columns` that is absent, not numeric or all null, listing the numeric ones."""
    numeric = numeric_columns(df)
    for column in columns:
        if column not in df.columns:
            problem = "is not a column"
        elif len(df) and df[column].isna().all():
            problem = "holds no values"
        elif column not in numeric:
            problem = "is not numeric"
        else:
            continue
        raise AnalysisError(f"{column!r} {problem}; numeric columns: {', '.join(numeric)}")


def names(columns: str | Iterable[str]) -> list[str]:
    """`columns` as a list; a single name may be given as a plain string."""
    return [columns] if isinstance(columns, str) else list(columns)


def present(df: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """Those of `columns` that `df` has, in the order given (for optional columns)."""
    return [c for c in columns if c in df.columns]


def distinct(series: pd.Series) -> list:
    """The distinct non-null values of `series`, in order of first appearance."""
    return series.dropna().unique().tolist()


def require_single(df: pd.DataFrame, column: str, hint: str) -> None:
    """Raise when `column` holds more than one value; `hint` says how to choose one."""
    if column in df.columns and len(values := distinct(df[column])) > 1:
        raise AnalysisError(f"rows span several {column} values ({', '.join(map(str, values))}): {hint}")


# Scores of the foundation before fine-tuning, the same for every trial of a study: shown in tables as
# the reference a fine-tuned model is read against, left out of statistics, fronts and rankings.
# `replay_before`: on the replay (pre-training) sample; `val_before`: on the validation set (zero-shot).
REFERENCE_TEST_SETS = ("replay_before", "val_before")


def without_reference_sets(scores: pd.DataFrame) -> pd.DataFrame:
    """`scores` less the rows of the not yet fine-tuned foundation (`REFERENCE_TEST_SETS`)."""
    return scores[~scores["test_set"].isin(REFERENCE_TEST_SETS)] if "test_set" in scores else scores


def test_sets_with(scores: pd.DataFrame, metric: str) -> list[str]:
    """The test sets of `scores` with a value of `metric` in some row, in order of appearance: an
    energy-only set (a path, a scan, dimer curves) has no force RMSE, a forces-only set no energy RMSE."""
    return distinct(scores.loc[scores[metric].notna(), "test_set"]) if metric in scores else []


def rows_with(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """All rows of the test sets that hold `metric` (`test_sets_with`), diverged ones included; raises
    when no row holds it, naming what the rows do hold."""
    require_columns(scores, ["test_set"], "the scores")
    if metric in scores and len(scores) and scores[metric].isna().all():
        held = ", ".join(c for c in numeric_columns(scores) if scores[c].notna().any())
        test_sets = ", ".join(map(str, distinct(scores["test_set"])))
        raise AnalysisError(f"{metric!r} holds no values on test set {test_sets}; columns with values there: {held}")
    require_numeric(scores, [metric])
    return scores[scores["test_set"].isin(test_sets_with(scores, metric))]


def metrics_with_values(scores: pd.DataFrame, metrics: Iterable[str]) -> list[str]:
    """Those of `metrics` that some row of `scores` holds a value of, in the order given."""
    return [m for m in metrics if m in scores and scores[m].notna().any()]
