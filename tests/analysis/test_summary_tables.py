"""summary_table, improvement_vs, lbfgs_gain and with_total_wall_time against hand computations."""

import math

import pandas as pd
import pytest

from analysis import AnalysisError, improvement_vs, lbfgs_gain, summary_table
from analysis.tables import compared_within, curve_summary, with_total_wall_time


def score(optimizer, seed, test_set, force, *, lr=1e-3, stage="first_order", status="ok", trial=None,
          parent=None, wall=100.0):
    return dict(study="s", trial_id=trial or f"{optimizer}-{lr}-{seed}-{stage}", stage=stage,
                parent_trial_id=parent, optimizer=optimizer, lr=lr, seed=seed, system="biphenyl-xtb",
                mode="replay", test_set=test_set, energy_rmse_mev_atom=force / 10, force_rmse_mev_a=force,
                wall_time_s=wall, status=status)


# force RMSE per optimizer and seed on test sets A and B (B = A + offset)
FORCES = {"adam": (10.0, 12.0, 14.0), "sgd": (20.0, 22.0, 21.0), "lamb": (9.0, 15.0, 12.0)}
OFFSET = {"A": 0.0, "B": 5.0}


@pytest.fixture
def scores():
    rows = [score(opt, seed, ts, f + OFFSET[ts]) for opt, fs in FORCES.items() for seed, f in enumerate(fs)
            for ts in OFFSET]
    rows.append(score("sgd", 3, "A", 1000.0, status="diverged"))  # ignored: not ok
    if_sgd_only_on_b = score("sgd", 4, "B", float("nan"), status="error")
    return pd.DataFrame([*rows, if_sgd_only_on_b])


def test_summary_means_stds_and_counts_match_hand_computation(scores):
    table = summary_table(scores, ["force_rmse_mev_a"]).set_index(["optimizer", "test_set"])
    assert list(table.index) == [("adam", "A"), ("adam", "B"), ("sgd", "A"), ("sgd", "B"), ("lamb", "A"), ("lamb", "B")]
    assert table.loc[("adam", "A"), "force_rmse_mev_a_mean"] == pytest.approx(12.0)
    assert table.loc[("adam", "A"), "force_rmse_mev_a_std"] == pytest.approx(2.0)  # sample std of 10, 12, 14
    assert table.loc[("sgd", "B"), "force_rmse_mev_a_mean"] == pytest.approx(26.0)
    assert table.loc[("sgd", "A"), "force_rmse_mev_a_std"] == pytest.approx(1.0)
    assert table.loc[("lamb", "A"), "force_rmse_mev_a_std"] == pytest.approx(3.0)
    assert (table["force_rmse_mev_a_n"] == 3).all()


def test_best_two_per_condition_are_ranked(scores):
    table = summary_table(scores).set_index(["optimizer", "test_set"])
    # means on A: adam 12, sgd 21, lamb 12 -> adam and lamb tie for best, sgd third
    assert table.xs("A", level="test_set")["force_rmse_mev_a_rank"].to_dict() == {"adam": 1, "sgd": 3, "lamb": 1}
    assert table.xs("B", level="test_set")["energy_rmse_mev_atom_rank"].to_dict() == {"adam": 1, "sgd": 3, "lamb": 1}


def test_ranks_without_ties():
    rows = [score(opt, seed, "A", f) for opt, f in {"a": 3.0, "b": 1.0, "c": 2.0, "d": 4.0}.items() for seed in (0, 1)]
    table = summary_table(pd.DataFrame(rows), ["force_rmse_mev_a"])
    assert table.set_index("optimizer")["force_rmse_mev_a_rank"].to_dict() == {"a": 3, "b": 1, "c": 2, "d": 4}


def test_single_names_may_be_plain_strings(scores):
    table = summary_table(scores, "force_rmse_mev_a", by="optimizer", conditions="test_set")
    assert list(table.columns[:3]) == ["optimizer", "test_set", "force_rmse_mev_a_mean"]
    with pytest.raises(AnalysisError, match="at least one metric and one column to group by"):
        summary_table(scores, by=(), conditions=())


def test_single_seed_has_undefined_std():
    table = summary_table(pd.DataFrame([score("adam", 0, "A", 5.0)]), ["force_rmse_mev_a"])
    assert math.isnan(table["force_rmse_mev_a_std"].iloc[0])


def test_lr_as_extra_axis(scores):
    more = pd.DataFrame([score("adam", s, "A", 30.0 + s, lr=1e-4) for s in range(3)])
    table = summary_table(pd.concat([scores, more]), ["force_rmse_mev_a"], by=("optimizer", "lr"))
    adam_a = table[(table["optimizer"] == "adam") & (table["test_set"] == "A")].set_index("lr")
    assert adam_a["force_rmse_mev_a_mean"].to_dict() == pytest.approx({1e-3: 12.0, 1e-4: 31.0})
    assert adam_a.loc[1e-4, "force_rmse_mev_a_rank"] == 1  # ranked within its own lr, as Table C1 marks
    sgd_a = table[(table["optimizer"] == "sgd") & (table["test_set"] == "A")]
    assert sgd_a["force_rmse_mev_a_rank"].tolist() == [3]  # behind adam and lamb at lr 1e-3, not behind 1e-4


def test_a_column_whose_values_are_all_equal_gets_no_marks(scores):
    """The replay set before fine-tuning scores the same foundation for every optimizer."""
    same = pd.DataFrame([score(name, s, "replay_before", 50.0) for name in ("adam", "sgd", "lamb") for s in range(3)])
    table = summary_table(pd.concat([scores, same]), ["force_rmse_mev_a"])
    ranks = table.set_index(["optimizer", "test_set"])["force_rmse_mev_a_rank"]
    assert ranks.xs("replay_before", level="test_set").isna().all()
    assert ranks[("adam", "A")] == 1


def test_solvers_named_with_their_method_are_ranked_within_each_lr_not_each_alone():
    """`load` names a method's solver `adam+lora`: grouping by that name would leave one row per group,
    every one marked best; with --by method,optimizer,lr the solvers at one lr are compared."""
    forces = {("lora", "adam+lora"): 30.0, ("lora", "sgd+lora"): 40.0, ("naive", "adam+naive"): 20.0,
              ("naive", "sgd+naive"): 50.0}
    rows = pd.DataFrame([score(solver, s, "A", force + s, lr=lr) | {"method": method}
                         for (method, solver), force in forces.items() for lr in (1e-3, 1e-2) for s in range(3)])
    table = summary_table(rows, ["force_rmse_mev_a"], by=("method", "optimizer", "lr"))
    assert compared_within(table, ["method", "optimizer", "lr"]) == ["lr"]
    ranks = table.set_index(["optimizer", "lr"])["force_rmse_mev_a_rank"]
    assert ranks.xs(1e-3, level="lr").to_dict() == {"adam+lora": 2, "sgd+lora": 3, "adam+naive": 1, "sgd+naive": 4}


def test_scores_equal_but_for_float32_rounding_get_no_marks(scores):
    same = pd.DataFrame([score(name, s, "replay_before", 129.1 + 1e-6 * (name == "sgd")) for name in FORCES
                         for s in range(3)])
    ranks = summary_table(pd.concat([scores, same]), ["force_rmse_mev_a"]).set_index(
        ["optimizer", "test_set"])["force_rmse_mev_a_rank"]
    assert ranks.xs("replay_before", level="test_set").isna().all() and ranks[("sgd", "A")] == 3


def test_mixed_lrs_or_stages_are_refused_with_the_varying_column(scores):
    more = pd.DataFrame([score("adam", s, "A", 30.0, lr=1e-4) for s in range(3)])
    with pytest.raises(AnalysisError, match=r"\(optimizer, test_set\): lr varies within a group"):
        summary_table(pd.concat([scores, more]))
    refined = pd.DataFrame([score("adam", 0, "A", 9.0, stage="lbfgs")])
    with pytest.raises(AnalysisError, match="stage varies"):
        summary_table(pd.concat([scores, refined]))


def test_duplicate_study_is_refused(scores):
    with pytest.raises(AnalysisError, match="loaded twice"):
        summary_table(pd.concat([scores, scores]))


def test_no_ok_rows_and_unknown_metric(scores):
    with pytest.raises(AnalysisError, match="no rows with status 'ok'; statuses: diverged"):
        summary_table(scores[scores["status"] == "diverged"])
    with pytest.raises(AnalysisError, match="'virial_rmse' is not a column"):
        summary_table(scores, ["virial_rmse"])


def test_improvement_is_positive_when_better_and_negative_when_worse(scores):
    table = improvement_vs(scores, baseline="adam").set_index(["optimizer", "test_set"])
    assert "adam" not in table.index.get_level_values("optimizer")
    assert table.loc[("sgd", "A"), "improvement_pct"] == pytest.approx(100 * (12 - 21) / 12)  # worse: -75 %
    assert table.loc[("sgd", "A"), "improvement_pct"] < 0
    assert table.loc[("lamb", "B"), "improvement_pct"] == pytest.approx(0.0)  # same mean 17
    better = improvement_vs(scores, baseline="sgd").set_index(["optimizer", "test_set"])
    assert better.loc[("adam", "B"), "improvement_pct"] == pytest.approx(100 * (26 - 17) / 26)
    assert (better["improvement_pct"] > 0).all()
    assert set(better["baseline"]) == {"sgd"} and set(better["metric"]) == {"force_rmse_mev_a"}


def test_unknown_baseline_lists_optimizers(scores):
    with pytest.raises(AnalysisError, match="baseline optimizer 'radam' and of another; optimizers: adam, sgd, lamb"):
        improvement_vs(scores, baseline="radam")
    with pytest.raises(AnalysisError, match="optimizers: adam$"):
        improvement_vs(scores[scores["optimizer"] == "adam"], baseline="adam")


def refinement_rows():
    """adam seeds 0, 1 refined (better); sgd seed 0 refined (worse). A decoy lbfgs trial of sgd
    points at adam's seed 2 as parent, so pairing must follow parent_trial_id, not optimizer and seed."""
    first = [score(opt, seed, "A", f, trial=f"{opt}{seed}") for opt, f in (("adam", 10.0), ("sgd", 20.0))
             for seed in range(3)]
    first[1]["force_rmse_mev_a"] = 14.0  # adam1
    refined = [score("adam", 0, "A", 8.0, stage="lbfgs", trial="adam0-lb", parent="adam0"),
               score("adam", 1, "A", 12.0, stage="lbfgs", trial="adam1-lb", parent="adam1"),
               score("sgd", 0, "A", 25.0, stage="lbfgs", trial="sgd0-lb", parent="sgd0"),
               score("adam", 2, "A", 99.0, stage="lbfgs", trial="orphan", parent="missing"),
               score("adam", 3, "A", 1.0, stage="lbfgs", trial="failed", parent="adam2", status="diverged")]
    return pd.DataFrame(first + refined)


def test_lbfgs_gain_pairs_by_parent_id():
    gain = lbfgs_gain(refinement_rows()).set_index("optimizer")
    assert gain.loc["adam", "base_mean"] == pytest.approx(12.0)  # parents adam0 (10) and adam1 (14) only
    assert gain.loc["adam", "refined_mean"] == pytest.approx(10.0)
    assert gain.loc["adam", "delta"] == pytest.approx(-2.0)
    assert gain.loc["adam", "n"] == 2 and bool(gain.loc["adam", "improved"])
    assert gain.loc["sgd", "delta"] == pytest.approx(5.0) and not gain.loc["sgd", "improved"]
    assert gain.loc["sgd", "change_pct"] == pytest.approx(25.0)
    assert list(gain.columns[:4]) == ["system", "mode", "test_set", "base_mean"]


def test_lbfgs_gain_errors():
    rows = refinement_rows()
    with pytest.raises(AnalysisError, match="no 'ok' lbfgs rows; stages present: first_order"):
        lbfgs_gain(rows[rows["stage"] == "first_order"])
    with pytest.raises(AnalysisError, match="parent_trial_id matches"):
        lbfgs_gain(rows[rows["trial_id"].isin(["adam1", "orphan", "sgd0"])])
    with pytest.raises(AnalysisError, match="no column 'parent_trial_id'"):
        lbfgs_gain(rows.drop(columns="parent_trial_id"))


def test_total_wall_time_adds_the_parents_first_order_time():
    rows = pd.DataFrame([score("adam", 0, "A", 1.0, trial="p", wall=100.0),
                         score("adam", 0, "A", 1.0, trial="r", parent="p", stage="lbfgs", wall=20.0),
                         score("adam", 0, "A", 1.0, trial="o", parent="gone", stage="lbfgs", wall=20.0)])
    total = with_total_wall_time(rows)["total_wall_time_s"].tolist()
    assert total[:2] == [100.0, 120.0] and math.isnan(total[2])


def test_curve_summary_takes_last_and_best_step():
    curves = pd.DataFrame({"study": "s", "trial_id": ["t"] * 3, "stage": "first_order", "optimizer": "adam",
                           "lr": 1e-3, "seed": 0, "step": [2, 0, 1], "val_force_rmse_mev_a": [5.0, 9.0, 4.0]})
    row = curve_summary(curves).iloc[0]
    assert (row["step"], row["final_val_force_rmse_mev_a"], row["best_val_force_rmse_mev_a"]) == (2, 5.0, 4.0)


def test_a_signed_error_ranks_by_its_distance_from_zero():
    barriers = {"adam": -3.0, "sgd": 2.0, "lamb": -1.0}
    rows = [dict(score(o, s, "scan", 1.0), barrier_error_mev=b) for o, b in barriers.items() for s in range(2)]
    table = summary_table(pd.DataFrame(rows), ["barrier_error_mev"]).set_index("optimizer")
    assert table["barrier_error_mev_rank"].to_dict() == {"adam": 3, "sgd": 2, "lamb": 1}
