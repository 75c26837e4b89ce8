"""Seed statistics, rank stability, time-to-target and performance profiles against hand-made
frames whose answers are known."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis import AnalysisError
from analysis.stats import (check_taus, interval_is_range, normal_seeds, paired_comparison, performance_profiles,
                            performance_ratios, profile_scores, rank_stability, rank_summary, ranking_is_stable,
                            seed_ranks, seeds_needed, smallest_p, target_summary, time_to_target)

BASE = [40.0, 42.0, 41.0, 43.0, 39.0]  # seed effects the optimizers share
NOISE = [0.5, -0.4, 0.3, -0.6, 0.2]


def scores(per_seed: dict[str, list[float]], test_set: str = "val", lr: float = 1e-3, **extra) -> pd.DataFrame:
    """One 'ok' row per optimizer and seed (the list's index) with force_rmse_mev_a = the value."""
    return pd.DataFrame([dict(study="s", stage="first_order", optimizer=optimizer, lr=lr, seed=seed,
                              test_set=test_set, status="ok", force_rmse_mev_a=value, **extra)
                         for optimizer, values in per_seed.items() for seed, value in enumerate(values)])


def shifted(shift: float, noise=NOISE) -> list[float]:
    return [b + shift + n for b, n in zip(BASE, noise)]


def test_a_planted_difference_is_found_and_noise_is_not():
    table = paired_comparison(scores({"adam": BASE, "good": shifted(-3), "bad": shifted(3), "same": shifted(0)}),
                              baseline="adam").set_index("optimizer")
    assert table["verdict"].to_dict() == {"good": "better", "bad": "worse", "same": "no clear difference"}
    assert table.loc["good", "difference"] == pytest.approx(-3 + np.mean(NOISE))
    assert table.loc["good", "ci_high"] < 0 < table.loc["bad", "ci_low"]
    assert table.loc["good", "p_value"] == pytest.approx(2 / 32)  # all five signs agree: the exact floor
    assert table.loc["same", "p_value"] > 0.5
    assert (table["n"] == 5).all() and set(table["baseline"]) == {"adam"}


def test_three_seeds_interval_is_the_range_and_p_cannot_go_below_a_quarter():
    table = paired_comparison(scores({"adam": BASE[:3], "adamw": [b - d for b, d in zip(BASE, (1.0, 4.0, 2.0))]}))
    row = table.iloc[0]
    assert (row["ci_low"], row["ci_high"], row["p_value"]) == (-4.0, -1.0, 0.25)
    assert row["verdict"] == "better" and row["difference_std"] == pytest.approx(1.5275, abs=1e-4)
    assert smallest_p(3) == 0.25 and smallest_p(6) == pytest.approx(0.03125)
    assert interval_is_range(3) and not interval_is_range(4)


def test_mixed_signs_over_three_seeds_are_no_clear_difference():
    table = paired_comparison(scores({"adam": BASE[:3], "adamw": [BASE[0] - 5, BASE[1] - 5, BASE[2] + 1]}))
    assert table["verdict"].tolist() == ["no clear difference"]


def test_bootstrap_is_seeded_and_resamples_are_settable():
    frame = scores({"adam": BASE, "lamb": shifted(0.4, [0.9, -1.2, 0.4, 0.1, -0.3])})
    first, again = paired_comparison(frame), paired_comparison(frame)
    pd.testing.assert_frame_equal(first, again)
    other = paired_comparison(frame, seed=1, n_resamples=2000)
    assert other.loc[0, "ci_low"] != first.loc[0, "ci_low"]


def test_pairs_need_the_same_lr_seed_and_test_set():
    frame = pd.concat([scores({"adam": BASE[:3], "sgd": shifted(5)[:3]}, lr=1e-3),
                       scores({"adam": BASE[:3], "sgd": shifted(-5)[:3]}, lr=1e-4),
                       scores({"adam": BASE[:2], "sgd": shifted(1)[:3]}, test_set="300K")])
    table = paired_comparison(frame)
    assert table[["lr", "test_set", "n", "verdict"]].values.tolist() == [
        [1e-3, "val", 3, "worse"], [1e-4, "val", 3, "better"], [1e-3, "300K", 2, "worse"]]


def test_a_varying_stage_is_kept_apart():
    frame = pd.concat([scores({"adam": BASE[:3], "lamb": shifted(2)[:3]}),
                       scores({"adam": BASE[:3], "lamb": shifted(-2)[:3]}).assign(stage="lbfgs")])
    assert paired_comparison(frame)[["stage", "verdict"]].values.tolist() == [
        ["first_order", "worse"], ["lbfgs", "better"]]


def test_one_pair_gives_no_interval_and_no_clear_difference():
    table = paired_comparison(scores({"adam": [40.0], "lamb": [30.0]}))
    assert math.isnan(table.loc[0, "ci_low"]) and table.loc[0, "verdict"] == "no clear difference"


@pytest.mark.parametrize("frame, baseline, message", [
    (scores({"adam": BASE, "lamb": BASE}), "sgd", "baseline optimizer 'sgd' and of another; optimizers: adam, lamb"),
    (scores({"adam": BASE}), "adam", "and of another; optimizers: adam"),
    (pd.concat([scores({"adam": BASE[:2]}), scores({"lamb": BASE[:2]}, lr=1e-4)]), "adam", "no run pairs with"),
    (scores({"adam": BASE, "lamb": BASE}).assign(status="diverged"), "adam", "no rows with status 'ok'"),
])
def test_comparison_errors(frame, baseline, message):
    with pytest.raises(AnalysisError, match=message):
        paired_comparison(frame, baseline=baseline)


def test_seeds_needed_for_the_best_two_by_the_normal_approximation():
    # paired differences (second - best) 0, 1, 2: mean 1, std 1 -> ((1.96 + 0.84) * 1 / 1)^2 = 7.85 -> 8
    frame = scores({"sgd": [50.0, 50.0, 50.0], "best": [10.0, 11.0, 12.0], "second": [10.0, 12.0, 14.0]})
    row = seeds_needed(frame).iloc[0]
    assert (row["best"], row["second"], row["n"], row["separated"]) == ("best", "second", 3, False)
    assert (row["ci_low"], row["ci_high"], row["seeds_needed"], row["extra_seeds"]) == (0.0, 2.0, 8.0, 5.0)
    clear = seeds_needed(scores({"best": [10.0, 11.0, 12.0], "second": [11.0, 13.0, 15.0]})).iloc[0]
    assert clear["separated"] and clear["extra_seeds"] == 0


def test_normal_seeds_edge_cases():
    needed = normal_seeds(pd.Series([1.0, 0.0, 2.0, 1.0]), pd.Series([1.0, 1.0, 0.0, np.nan]))
    assert needed.tolist()[:3] == [8.0, np.inf, 2.0] and math.isnan(needed.iloc[3])


def four_optimizers(orders: list[str]) -> pd.DataFrame:
    """Seed i ranks the optimizers in the order of the string orders[i] (best first)."""
    return scores({name: [10.0 + order.index(name) for order in orders] for name in "abcd"})


def test_kendall_tau_of_a_known_swap():
    frame = four_optimizers(["abcd", "bacd", "abcd"])
    taus = rank_stability(frame)
    assert taus["tau"].round(6).tolist() == [round(2 / 3, 6), 1.0, round(2 / 3, 6)]  # one of 6 pairs flips
    assert taus["stable"].tolist() == [False, True, False] and (taus["n"] == 4).all()
    assert ranking_is_stable(taus) and not ranking_is_stable(taus, threshold=0.8)
    assert not ranking_is_stable(rank_stability(four_optimizers(["abcd", "dcba"])))  # tau = -1


def test_seed_ranks_and_their_summary():
    ranks = seed_ranks(four_optimizers(["abcd", "bacd", "abcd"]))
    assert ranks.query("seed == 1").set_index("optimizer")["rank"].to_dict() == {"a": 2, "b": 1, "c": 3, "d": 4}
    summary = rank_summary(ranks).set_index("optimizer")
    assert summary.index.tolist() == ["a", "b", "c", "d"]
    assert summary.loc["a", "mean_rank"] == pytest.approx(4 / 3)
    assert summary.loc["a", "holds"] == pytest.approx(2 / 3) and summary.loc["c", "holds"] == 1.0
    assert (summary.loc["b", "best_rank"], summary.loc["b", "worst_rank"]) == (1, 2)


def test_rank_stability_needs_two_seeds():
    with pytest.raises(AnalysisError, match="at least two seeds"):
        rank_stability(four_optimizers(["abcd"]))


def curves(values: dict[str, list[float]], study: str = "s") -> pd.DataFrame:
    """Per trial, validation force RMSE at steps 1, 2, ... with 2 s of wall time per step."""
    return pd.DataFrame([dict(study=study, trial_id=trial, stage="first_order", optimizer=trial[0], lr=1e-3, seed=0,
                              step=step, val_force_rmse_mev_a=value, wall_time_s=2.0 * step)
                         for trial, series in values.items() for step, value in enumerate(series, start=1)])


def test_time_to_target_with_a_given_target_and_never_reached():
    times = time_to_target(curves({"a1": [10.0, 5.0, 3.0], "b1": [9.0, 8.0, 7.0]}), target=5.0).set_index("trial_id")
    assert times.loc["a1", ["step_to_target", "wall_s_to_target", "reached"]].tolist() == [2.0, 4.0, True]
    assert times.loc["b1", ["step_to_target", "wall_s_to_target", "reached"]].tolist() == [np.inf, np.inf, False]


def test_default_target_is_a_tenth_above_the_best_final_value_per_study():
    frame = pd.concat([curves({"a1": [10.0, 5.0, 3.0], "b1": [9.0, 3.2, 3.1]}),
                       curves({"a2": [8.0, 7.0, 6.0]}, study="t")])
    times = time_to_target(frame).set_index("trial_id")
    assert times["target"].to_dict() == pytest.approx({"a1": 3.3, "b1": 3.3, "a2": 6.6})
    assert times["step_to_target"].to_dict() == {"a1": 3, "b1": 2, "a2": 3}


def test_target_summary_medians_count_never_as_infinite():
    times = time_to_target(curves({"a1": [5.0, 4.0], "a2": [9.0, 4.0], "a3": [9.0, 9.0]}), target=5.0)
    row = target_summary(times).iloc[0]
    assert (row["trials"], row["reached"], row["median_step"], row["median_wall_s"]) == (3, 2, 2.0, 4.0)
    none = target_summary(time_to_target(curves({"a1": [9.0], "a2": [9.0], "a3": [1.0]}), target=5.0)).iloc[0]
    assert none["median_step"] == np.inf


def two_problems() -> pd.DataFrame:
    """val: a 10, b 15; 300K: a 12, b 10 (b at its better lr; its other lr is worse everywhere)."""
    return pd.concat([scores({"a": [10.0], "b": [15.0]}), scores({"a": [12.0], "b": [10.0]}, test_set="300K"),
                      scores({"b": [30.0, 30.0]}, lr=1e-2), scores({"b": [30.0]}, lr=1e-2, test_set="300K")])


def test_performance_ratios_take_each_optimizer_at_its_best_lr():
    ratios = performance_ratios(two_problems())
    assert ratios.droplevel(["study", "stage"]).to_dict() == {"a": {"val": 1.0, "300K": 1.2},
                                                              "b": {"val": 1.5, "300K": 1.0}}


def test_known_rho_and_area():
    profiles = performance_profiles(two_problems(), taus=[1.0, 1.2, 1.5, 2.0])
    rho = profiles.pivot(index="tau", columns="optimizer", values="rho")
    assert rho["a"].tolist() == [0.5, 1.0, 1.0, 1.0] and rho["b"].tolist() == [0.5, 0.5, 1.0, 1.0]
    log = np.log([1.0, 1.2, 1.5, 2.0])
    area_b = (0.5 * (log[1] - log[0]) + 0.75 * (log[2] - log[1]) + 1.0 * (log[3] - log[2])) / log[3]
    scored = profile_scores(profiles).set_index("optimizer")
    assert scored.loc["b", "score"] == pytest.approx(area_b)
    assert scored.index.tolist() == ["a", "b"] and scored["rank"].tolist() == [1, 2]


def test_an_optimizer_missing_on_a_problem_never_counts_there():
    frame = pd.concat([scores({"a": [10.0], "b": [11.0]}), scores({"a": [10.0]}, test_set="300K")])
    rho = performance_profiles(frame, taus=[1.0, 2.0]).pivot(index="tau", columns="optimizer", values="rho")
    assert rho["b"].tolist() == [0.0, 0.5] and (profile_scores(
        performance_profiles(frame, taus=[1.0, 2.0])).set_index("optimizer")["score"]["a"] == 1.0)


@pytest.mark.parametrize("taus", [[1.0], [1.0, 1.0], [0.5, 2.0], [2.0, 1.5]])
def test_bad_taus(taus):
    with pytest.raises(AnalysisError, match="at least two increasing ratios >= 1"):
        check_taus(taus)


def test_time_to_target_reports_training_seconds_where_the_curves_have_them():
    frame = curves({"a1": [10.0, 5.0, 3.0], "b1": [9.0, 8.0, 7.0]})
    frame["train_time_s"] = frame["wall_time_s"] / 2
    frame["steps"] = frame["step"] * 4
    times = time_to_target(frame, target=5.0).set_index("trial_id")
    assert times.loc["a1", ["train_s_to_target", "steps_to_target"]].tolist() == [2.0, 8.0]
    assert times.loc["b1", ["train_s_to_target", "steps_to_target"]].tolist() == [np.inf, np.inf]
    assert target_summary(times.reset_index())["median_train_s"].tolist() == [2.0, np.inf]
