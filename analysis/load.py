"""Read the Parquet results of one or several studies into one long-format DataFrame.

A study folder holds `results/scores*.parquet` (one row per trial, stage and test set),
`results/curves*.parquet` (one row per trial, stage and step) and, with an evaluate stage,
`results/properties*.parquet` (one row per trial, stage of the model evaluated and property); part
files are concatenated and columns that only some parts have are kept (null elsewhere).
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api.types import is_numeric_dtype

from analysis.columns import distinct, require_columns
from analysis.errors import AnalysisError

TABLES = ("scores", "curves", "properties")
REQUIRED_COLUMNS = {
    "scores": ("study", "trial_id", "stage", "optimizer", "lr", "seed", "test_set", "status"),
    "curves": ("study", "trial_id", "stage", "optimizer", "lr", "seed", "step"),
    "properties": ("study", "trial_id", "stage", "optimizer", "lr", "seed", "evaluator", "property", "value",
                   "reference", "error", "unit", "status"),
}
_GLOB_CHARACTERS = frozenset("*?[")


def load(*paths: str | Path, table: str = "scores", stage=None, optimizer=None, lr=None,
         test_set=None, status=None) -> pd.DataFrame:
    """Rows of `table` ('scores', 'curves' or 'properties') from studies, filtered.

    `paths` are study folders, their `results/` folders, Parquet files or glob patterns of any of
    these. Each filter takes one value or a list; `lr` matches to a relative 1e-9. Raises
    `AnalysisError` when a folder has no results, a required column is missing, or a filter
    leaves no rows (the message lists the values available).
    """
    frame = read_parquet(parquet_files(*paths, table=table))
    require_columns(frame, REQUIRED_COLUMNS[table], f"the {table} table")
    filters = dict(stage=stage, optimizer=optimizer, lr=lr, test_set=test_set, status=status)
    return with_context_in_optimizer(select(frame, **{column: value for column, value in filters.items()
                                                      if value is not None}))


# Row columns of a space's grid axes that make each (optimizer, value) pair a solver of its own.
SOLVER_CONTEXT = ("method", "protocol")


def with_context_in_optimizer(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of a space with methods or protocols (a `method` or `protocol` column, e.g.
    `method_benchmark`, `protocol_ablation`) name their optimizer with them, `adam+lora`, `adam+ema`,
    `adam+lora+ema`: each combination is a solver of its own, so (optimizer, lr, seed) still names
    one trial in every analysis. Filters take the plain names."""
    columns = [c for c in SOLVER_CONTEXT if c in frame and frame[c].notna().any()]
    if not columns:
        return frame
    labelled = frame["optimizer"].astype("string")
    for column in columns:
        labelled = labelled.where(frame[column].isna(), labelled + "+" + frame[column].astype("string"))
    return frame.assign(optimizer=labelled.astype(object))


def parquet_files(*paths: str | Path, table: str = "scores", missing_ok: bool = False) -> list[Path]:
    """The `table` Parquet files of `paths` (see `load`), each once.

    A folder without any raises, unless `missing_ok` (then it contributes nothing).
    """
    if table not in TABLES:
        raise AnalysisError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")
    if not paths:
        raise AnalysisError("no study given: pass study folders, results folders, .parquet files or globs")
    files = [f for path in expand(paths) for f in _table_files(path, table, missing_ok)]
    return list(dict.fromkeys(f.resolve() for f in files))


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Paths with glob patterns replaced by their (sorted) matches; a pattern matching nothing raises."""
    expanded = []
    for path in map(str, paths):
        matches = sorted(glob.glob(path)) if _GLOB_CHARACTERS & set(path) else [path]
        if not matches:
            raise AnalysisError(f"no file or folder matches the pattern {path!r}")
        expanded += map(Path, matches)
    return expanded


def _table_files(path: Path, table: str, missing_ok: bool) -> list[Path]:
    if path.is_file():
        if path.suffix != ".parquet":
            raise AnalysisError(f"{path} is not a .parquet file, a study folder or a results folder")
        return [path]
    if not path.is_dir():
        raise AnalysisError(f"{path} does not exist")
    for folder in (path / "results", path):
        if files := sorted(folder.glob(f"{table}*.parquet")):
            return files
    if missing_ok:
        return []
    raise AnalysisError(f"no {table} results in {path}: expected {path / 'results' / table}*.parquet")


def read_parquet(files: list[Path]) -> pd.DataFrame:
    """All rows of `files` in one frame; types of a column that differ between files are unified."""
    try:
        parts = [pq.read_table(f) for f in files]
        combined = pa.concat_tables(parts, promote_options="permissive")
    except (pa.ArrowException, OSError) as error:
        raise AnalysisError(f"cannot read results ({', '.join(map(str, files))}): {error}") from error
    if combined.num_rows == 0:
        raise AnalysisError(f"the results files hold no rows: {', '.join(map(str, files))}")
    return combined.to_pandas()


def select(frame: pd.DataFrame, **filters) -> pd.DataFrame:
    """Rows whose `column` matches the value, or one of the list of values, given for it.

    Filters apply in turn; one leaving no rows raises, naming the values that were available.
    """
    for column, wanted in filters.items():
        frame = _filter(frame, column, _as_list(column, wanted))
    return frame.reset_index(drop=True)


def _filter(frame: pd.DataFrame, column: str, wanted: list) -> pd.DataFrame:
    require_columns(frame, [column], f"cannot filter by {column}: the data")
    mask = _matches(frame[column], wanted)
    if not mask.any():
        available = ", ".join(map(str, distinct(frame[column])))
        raise AnalysisError(f"no rows with {column} in [{', '.join(map(str, wanted))}]; available: {available}")
    return frame[mask]


def _matches(series: pd.Series, wanted: list) -> np.ndarray:
    if not is_numeric_dtype(series):
        return series.isin(wanted).to_numpy()
    try:
        targets = np.asarray(wanted, dtype=float)
    except ValueError as error:
        raise AnalysisError(f"{series.name} holds numbers; cannot match {wanted}") from error
    values = series.to_numpy(dtype=float, na_value=np.nan)
    return np.isclose(values[:, None], targets[None, :], rtol=1e-9, atol=0.0).any(axis=1)


def _as_list(column: str, wanted) -> list:
    values = [wanted] if isinstance(wanted, (str, bytes)) or not isinstance(wanted, Iterable) else list(wanted)
    if not values:
        raise AnalysisError(f"the {column} filter was given no values")
    return values
