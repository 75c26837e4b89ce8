"""Analysis of optistudy results: read the Parquet rows a study writes, find Pareto fronts, build
tables over seeds and Altair charts. Knows nothing of Ray or torch; `python -m analysis --help`.
"""

from analysis.charts import curves_chart, frontier_chart, improvement_chart, lr_sensitivity_chart
from analysis.errors import AnalysisError
from analysis.frontier import non_dominated, pareto_front
from analysis.load import REQUIRED_COLUMNS, load, parquet_files, select
from analysis.lr_sensitivity import lr_sensitivity
from analysis.render import FORMATS, format_summary, mean_std, render
from analysis.sql import connect, sql
from analysis.tables import curve_summary, improvement_vs, lbfgs_gain, lbfgs_pairs, summary_table, with_total_wall_time

__all__ = [
    "AnalysisError", "FORMATS", "REQUIRED_COLUMNS",
    "load", "select", "parquet_files",
    "pareto_front", "non_dominated",
    "summary_table", "lr_sensitivity", "improvement_vs", "lbfgs_gain", "lbfgs_pairs", "with_total_wall_time",
    "curve_summary",
    "format_summary", "mean_std", "render",
    "frontier_chart", "improvement_chart", "curves_chart", "lr_sensitivity_chart",
    "connect", "sql",
]
