"""pareto_front on hand-built sets with known answers."""

import numpy as np
import pandas as pd
import pytest

from analysis import AnalysisError, non_dominated, pareto_front


def trials(points, columns=("time", "error")):
    return pd.DataFrame(points, columns=list(columns), index=[f"t{i}" for i in range(len(points))])


def test_known_front_in_input_order():
    df = trials([(3, 1), (1, 3), (2, 2), (3, 3), (2, 4), (4, 0.5)])
    front = pareto_front(df, ["time", "error"])
    assert list(front.index) == ["t0", "t1", "t2", "t5"]
    pd.testing.assert_frame_equal(front, df.loc[["t0", "t1", "t2", "t5"]])


def test_dict_and_list_objectives_agree():
    df = trials([(3, 1), (1, 3), (2, 2), (3, 3)])
    assert pareto_front(df, {"time": "min", "error": "min"}).equals(pareto_front(df, ["time", "error"]))


def test_equal_points_are_all_kept():
    df = trials([(1, 2), (1, 2), (2, 1), (2, 2)])
    assert list(pareto_front(df, ["time", "error"]).index) == ["t0", "t1", "t2"]


def test_tie_in_one_objective_is_broken_by_the_other():
    df = trials([(1, 2), (1, 3), (1, 2)])
    assert list(pareto_front(df, ["time", "error"]).index) == ["t0", "t2"]


def test_maximised_objective():
    df = trials([(1, 0.5), (2, 0.9), (2, 0.7), (3, 0.9)], columns=("time", "accuracy"))
    front = pareto_front(df, {"time": "min", "accuracy": "max"})
    assert list(front.index) == ["t0", "t1"]


def test_rows_with_nan_are_dropped_not_dominating():
    df = trials([(np.nan, 0.0), (2, 2), (3, np.nan), (3, 1)])
    assert list(pareto_front(df, ["time", "error"]).index) == ["t1", "t3"]


def test_single_objective_keeps_every_minimum():
    df = trials([(2, 0), (1, 0), (1, 5)])
    assert list(pareto_front(df, ["time"]).index) == ["t1", "t2"]


def test_empty_frame_gives_empty_front():
    assert pareto_front(trials([]).astype(float), ["time", "error"]).empty


def test_input_is_not_modified():
    df = trials([(3, 1), (1, 3), (2, 4)])
    before = df.copy()
    pareto_front(df, {"time": "min", "error": "max"})
    pd.testing.assert_frame_equal(df, before)


def test_non_dominated_in_three_objectives():
    costs = np.array([[1, 1, 1], [1, 1, 2], [0, 2, 2], [2, 0, 2], [1, 1, 1]], dtype=float)
    assert non_dominated(costs).tolist() == [True, False, True, True, True]


def test_unknown_column_names_it_and_lists_numeric_columns():
    df = trials([(1, 2)]).assign(optimizer="adam")
    with pytest.raises(AnalysisError, match=r"'force' is not a column; numeric columns: time, error$"):
        pareto_front(df, ["time", "force"])


def test_non_numeric_column_is_refused():
    df = trials([(1, 2)]).assign(optimizer="adam")
    with pytest.raises(AnalysisError, match="'optimizer' is not numeric"):
        pareto_front(df, ["optimizer"])


def test_bad_direction_and_no_objective():
    df = trials([(1, 2)])
    with pytest.raises(AnalysisError, match="'min' or 'max'; got {'time': 'minimize'}"):
        pareto_front(df, {"time": "minimize"})
    with pytest.raises(AnalysisError, match="at least one objective"):
        pareto_front(df, [])
