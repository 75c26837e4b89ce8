"""lr_sensitivity against the synthetic study's known values: force = FORCE x LR_FACTOR x
TEST_FACTOR + seed, lamb's 1e-3 seed 2 diverged (so validation chooses its 1e-4)."""

import pandas as pd
import pytest
from synthetic_study import FORCE, LR_FACTOR, TEST_FACTOR, first_order_scores

from analysis import AnalysisError
from analysis.lr_sensitivity import lr_sensitivity


@pytest.fixture(scope="module")
def table():
    return lr_sensitivity(pd.DataFrame(first_order_scores())).set_index(["optimizer", "test_set"])


def test_the_chosen_best_and_worst_lr_per_optimizer_and_test_set(table):
    adam = table.loc[("adam", "1200K")]
    assert (adam["lrs"], adam["chosen_lr"], adam["best_lr"], adam["worst_lr"]) == (2, 1e-3, 1e-3, 1e-4)
    assert adam["at_chosen"] == pytest.approx(FORCE["adam"] * TEST_FACTOR["1200K"] + 1)  # mean seed 1
    assert adam["spread_pct"] == pytest.approx(100 * (121.0 - 81.0) / 81.0)
    assert adam["chosen_loss_pct"] == 0 and adam["failed_at"] == ""


def test_a_choice_that_avoids_a_failed_lr_shows_what_it_gives_up(table):
    lamb = table.loc[("lamb", "300K")]
    assert (lamb["chosen_lr"], lamb["best_lr"], lamb["failed_at"]) == (1e-4, 1e-3, "0.001")
    best = FORCE["lamb"] * TEST_FACTOR["300K"] + 0.5  # seeds 0 and 1 only
    at_chosen = FORCE["lamb"] * LR_FACTOR[1e-4] * TEST_FACTOR["300K"] + 1
    assert lamb["chosen_loss_pct"] == pytest.approx(100 * (at_chosen - best) / best)


def test_the_foundations_reference_rows_stay_out_and_a_missing_metric_is_named():
    rows = pd.DataFrame(first_order_scores())
    reference = rows[rows["test_set"] == "val"].assign(test_set="replay_before")
    table = lr_sensitivity(pd.concat([rows, reference]))
    assert "replay_before" not in set(table["test_set"])
    with pytest.raises(AnalysisError, match="'virial' is not a column"):
        lr_sensitivity(rows, "virial")
