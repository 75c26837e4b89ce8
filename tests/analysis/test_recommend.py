"""The recommendation read first: planted tables whose answer is known (the lr chosen on validation,
the best per group of test sets, the grid-edge note, the honest words), and the study's closing lines."""

import numpy as np
import pandas as pd
import pytest
from synthetic_study import write_study

from analysis.recommend import recommendation, recommendation_lines, recommendation_text, groups_of_test_sets
from analysis.study_summary import study_summary

DRIFT = [0.0, 0.3, -0.2, 0.5, -0.4, 0.1, 0.25, -0.15]  # a seed's share, the same for every optimizer


def rows(values: dict[tuple[str, float, str], float], seeds: int = 3, noise: float = 0.05, **extra) -> pd.DataFrame:
    """(optimizer, lr, test set) -> force RMSE, per seed plus the seed's drift and a little noise."""
    rng = np.random.default_rng(0)
    return pd.DataFrame([dict(study="s", stage="first_order", optimizer=name, lr=lr, seed=seed, test_set=test_set,
                              status="ok", force_rmse_mev_a=value + DRIFT[seed] + noise * rng.random(), **extra)
                         for (name, lr, test_set), value in values.items() for seed in range(seeds)])


def planted(seeds: int = 3) -> pd.DataFrame:
    """schedulefree: best on validation at 5e-3 (the grid's top) and on the test sets there; at 1e-3
    it would be best on 1200K, the test-set oracle's pick. adam: best at 1e-3."""
    grid = {("schedulefree", 5e-3): (10.0, 20.0, 40.0), ("schedulefree", 1e-3): (14.0, 21.0, 30.0),
            ("adam", 1e-3): (12.0, 24.0, 45.0), ("adam", 5e-4): (13.0, 25.0, 46.0)}
    return rows({(name, lr, test_set): value for (name, lr), values in grid.items()
                 for test_set, value in zip(("val", "300K", "1200K"), values)}, seeds=seeds)


def test_groups_come_from_the_rows():
    frame = pd.concat([planted(), rows({("adam", 1e-3, "replay"): 5.0, ("adam", 1e-3, "replay_before"): 6.0}),
                       rows({("adam", 1e-3, "dihedral"): 7.0}, rel_energy_rmse_mev=3.0)])
    assert groups_of_test_sets(frame).to_dict() == {"val": "validation", "300K": "test sets", "1200K": "test sets",
                                                "replay": "replay", "dihedral": "scans"}


def test_each_group_gets_the_optimizer_at_its_lr_chosen_on_validation():
    table = recommendation(planted()).set_index("group")
    assert table.index.tolist() == ["validation", "test sets"]
    best = table.loc["test sets"]
    assert (best["best"], best["best_lr"], best["runner_up"], best["runner_up_lr"]) == ("schedulefree", 5e-3,
                                                                                      "adam", 1e-3)
    assert best["test_sets"] == "300K, 1200K" and best["difference"] == pytest.approx(-4.5, abs=0.1)
    assert best["best_mean"] == pytest.approx(30.0 + np.mean(DRIFT[:3]), abs=0.1)  # not 1e-3's 25.5


def test_the_words_are_honest_and_say_what_would_settle_it():
    three = recommendation_text(recommendation(planted()))
    assert "lower on every seed (3 seeds); about 7 seeds would settle it" in three[3]
    assert "with fewer than 6 seeds it cannot get there" in three[-1]
    eight = recommendation(planted(seeds=8))
    assert eight["verdict"].tolist() == ["better", "better"]
    assert not any("would settle" in line for line in recommendation_text(eight))


def test_a_best_lr_at_the_edge_of_the_grid_says_so_once_and_names_the_next_value():
    lines = recommendation_text(recommendation(planted()))
    edge = [line for line in lines if "the optimum may lie beyond it" in line]
    assert edge == ["  lr 0.005 is the largest of schedulefree's grid (0.001 to 0.005): the optimum may lie beyond "
                    "it; try 0.01 next (the next value of the 1-2-5 series)"]


def test_scans_are_judged_on_relative_energies_and_energy_only_sets_on_energy():
    scan = rows({("schedulefree", 5e-3, "dihedral"): 9.0, ("adam", 1e-3, "dihedral"): 8.0}).assign(
        rel_energy_rmse_mev=lambda f: f["force_rmse_mev_a"] / 3, force_rmse_mev_a=np.nan)
    table = recommendation(pd.concat([planted(), scan])).set_index("group")
    assert table.loc["scans", "metric"] == "rel_energy_rmse_mev" and table.loc["scans", "best"] == "adam"
    assert table.loc["scans", "best_mean"] == pytest.approx((8.0 + np.mean(DRIFT[:3])) / 3, abs=0.05)


def test_one_optimizer_gives_one_line_saying_why_there_is_no_recommendation():
    frame = planted()
    assert recommendation_lines(frame[frame["optimizer"] == "adam"]) == [
        "Recommendation: none (one optimizer, adam at lr 0.001 chosen on validation: nothing to compare it with)"]


def test_the_closing_lines_of_a_study_open_with_the_recommendation(tmp_path):
    lines = study_summary(write_study(tmp_path), 12.0).splitlines()
    assert lines[2].startswith("Recommendation: each optimizer at its learning rate chosen on validation")
    assert lines[3].startswith("- validation (val): adamw at lr 0.001")
    assert any(line.startswith("force RMSE (meV/A), stage first_order") for line in lines[6:])
