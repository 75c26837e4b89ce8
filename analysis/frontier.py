"""Pareto front of trials over several objectives (e.g. force RMSE vs wall time, the paper's Fig. 6).

As in optuna's `_multi_objective.py`, every objective is first turned into one to minimise
(maximised ones are negated); a single vectorised function then finds the non-dominated rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.columns import require_numeric
from analysis.errors import AnalysisError

DIRECTIONS = ("min", "max")
Objectives = Mapping[str, str] | Sequence[str]


def pareto_front(df: pd.DataFrame, objectives: Objectives) -> pd.DataFrame:
    """The rows of `df` that no other row dominates, in input order.

    `objectives` maps column -> 'min' or 'max', or lists columns that are all minimised. A row
    dominates another when it is no worse in every objective and better in one, so equal rows are
    all kept. Rows with NaN in an objective are dropped. Pure: no I/O, `df` is not modified.
    """
    costs = minimisation_costs(df, objectives)
    complete = ~np.isnan(costs).any(axis=1)
    keep = np.zeros(len(df), dtype=bool)
    keep[complete] = non_dominated(costs[complete])
    return df[keep]


def minimisation_costs(df: pd.DataFrame, objectives: Objectives) -> np.ndarray:
    """Array (rows, objectives) of the objective values, negated where the objective is maximised."""
    directions = as_directions(objectives)
    require_numeric(df, directions)
    signs = np.array([1.0 if d == "min" else -1.0 for d in directions.values()])
    return df[list(directions)].to_numpy(dtype=float, na_value=np.nan) * signs


def as_directions(objectives: Objectives) -> dict[str, str]:
    """`objectives` as column -> 'min' | 'max' (a list of columns means all 'min')."""
    if isinstance(objectives, str):
        objectives = [objectives]
    directions = dict(objectives) if isinstance(objectives, Mapping) else dict.fromkeys(objectives, "min")
    if not directions:
        raise AnalysisError("a Pareto front needs at least one objective column")
    if bad := {c: d for c, d in directions.items() if d not in DIRECTIONS}:
        raise AnalysisError(f"objective directions must be 'min' or 'max'; got {bad}")
    return directions


def non_dominated(costs: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of `costs` (n, k), all minimised, that no other row dominates.

    Compares every pair by broadcasting: O(n^2 k) memory, fine for thousands of trials.
    """
    a, b = costs[:, None, :], costs[None, :, :]
    a_dominates_b = (a <= b).all(axis=2) & (a < b).any(axis=2)
    return ~a_dominates_b.any(axis=0)
