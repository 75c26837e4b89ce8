"""Ad-hoc SQL over studies: DuckDB views `scores` and `curves` over the same Parquet files `load` reads."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from analysis.errors import AnalysisError
from analysis.load import TABLES, parquet_files


def connect(*paths: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per table (`scores`, `curves`) found under `paths`.

    Part files with different columns are unioned by name. Raises when no path has either table.
    """
    files = {table: parquet_files(*paths, table=table, missing_ok=True) for table in TABLES}
    if not any(files.values()):
        raise AnalysisError(f"no scores or curves results under {', '.join(map(str, paths))}")
    connection = duckdb.connect()
    for table, table_files in files.items():
        if table_files:
            connection.execute(f"CREATE VIEW {table} AS SELECT * FROM "
                               f"read_parquet({_sql_list(table_files)}, union_by_name = true)")
    return connection


def sql(query: str, *paths: str | Path) -> pd.DataFrame:
    """The result of `query` over the views of `connect(*paths)`, e.g.
    `sql("SELECT optimizer, avg(force_rmse_mev_a) FROM scores GROUP BY 1", "storage/study")`."""
    with connect(*paths) as connection:
        try:
            return connection.execute(query).df()
        except duckdb.Error as error:
            raise AnalysisError(f"query failed: {error}") from error


def _sql_list(files: list[Path]) -> str:
    quoted = ("'" + str(f).replace("'", "''") + "'" for f in files)
    return "[" + ", ".join(quoted) + "]"
