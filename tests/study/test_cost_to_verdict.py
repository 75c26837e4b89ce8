"""benchmarks/cost_to_verdict.py's bookkeeping: twins of several settings share one workdir and its
grid, a finished study of another space or flags is refused rather than read, a space of an lr per
optimizer narrowed, the twin timed at the grid's pace and replayed from the grid's curves."""

import argparse
import json

import pandas as pd
import pytest

from benchmarks.cost_to_verdict import (at_grid_pace, replayed_epochs, run_or_read, space_tables, space_text,
                                        twin_name)
from search_spaces import space_from_dict

GRID = {"optimizers": ["adam", "sgd"], "lrs": [1e-3], "seeds": [0, 1], "fixed": {"epochs": 10}}


def finished(workdir, name, table, flags):
    """A study that finished in `workdir` as run_or_read leaves it: its space file and manifest."""
    folder = workdir / "studies" / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"finished": "2026-12-07T11:00:00"}))
    (workdir / f"{name}.yaml").write_text(space_text(table, flags))
    return folder


def test_twins_of_other_grace_periods_get_names_of_their_own():
    names = {twin_name("lr_ablation", {"scheduler": "asha", "grace_period": grace, "reduction_factor": 3})
             for grace in (1, 2, 3)}
    assert len(names) == 3 and "lr_ablation-asha-grace_period2-reduction_factor3" in names


@pytest.mark.parametrize("table, flags", [({**GRID, "fixed": {"epochs": 4}}, []), (GRID, ["--system", "cu3au-emt"])])
def test_a_finished_study_of_another_space_or_flags_is_refused_not_read(tmp_path, table, flags):
    folder = finished(tmp_path, "lr_ablation-grid", GRID, [])
    assert run_or_read(GRID, "lr_ablation-grid", tmp_path, []) == folder  # the same space and flags: read
    with pytest.raises(SystemExit, match=f"{folder} holds a finished study of another space or flags"):
        run_or_read(table, "lr_ablation-grid", tmp_path, flags)


def test_at_the_grids_pace_a_stopped_trial_costs_the_grids_time_to_its_stop_epoch():
    grid = pd.DataFrame({"trial_id": ["g0", "g1"], "optimizer": ["adam", "sgd"], "lr": [1e-3, 1e-3], "seed": [0, 0],
                         "wall_time_s": [30.0, 40.0], "status": ["ok", "ok"]})
    curves = pd.DataFrame({"optimizer": ["sgd"] * 3, "lr": [1e-3] * 3, "seed": [0] * 3, "step": [1, 2, 3],
                           "wall_time_s": [11.0, 22.0, 33.0]})
    twin = pd.DataFrame({"trial_id": ["t0", "t1"], "optimizer": ["adam", "sgd"], "lr": [1e-3, 1e-3], "seed": [0, 0],
                         "wall_time_s": [90.0, 70.0], "status": ["ok", "early_stopped"],
                         "stopped_at_epoch": [None, 2.0]})
    assert at_grid_pace(twin, grid, curves) == 30.0 + 22.0  # the twin's own 160 s came on a busier machine


def test_a_space_of_an_lr_per_optimizer_narrowed_to_some_optimizers_keeps_their_lrs():
    args = argparse.Namespace(space="protocol_ablation", optimizers=["sgd", "schedulefree"], lrs=None, seeds=[0],
                              epochs=10, data_size="full", scheduler="asha", grace_period=1.0, reduction_factor=3.0)
    grid, twin = space_tables(args)
    assert grid["lr_by_optimizer"] == {"sgd": 1e-3, "schedulefree": 5e-3}
    assert "description" not in grid  # its prose changes; a finished grid of the same study stays readable
    space = space_from_dict("twin", twin)  # a valid space: each optimizer named once, with its [adaptive]
    assert space.optimizers == ("sgd", "schedulefree") and space.adaptive["grace_period"] == 1.0


def planted_curves(cells: list[tuple[str, float]]) -> pd.DataFrame:
    """Four epochs of 10 s for each (optimizer, validation error) cell, in the grid's order as given,
    and an L-BFGS stage's first iteration after them (no epoch: the replay leaves it out)."""
    return pd.DataFrame([{"trial_id": f"t{number}", "stage": stage, "optimizer": optimizer, "lr": 1e-3, "seed": 0,
                          "step": step, "wall_time_s": 10.0 * step, "val_force_rmse_mev_a": value}
                         for number, (optimizer, value) in enumerate(cells)
                         for stage, step in (*(("first_order", step) for step in (1, 2, 3, 4)), ("lbfgs", 1))])


def test_the_replay_stops_a_cell_worse_at_the_grace_period_and_keeps_the_others_to_the_end():
    adaptive = {"grace_period": 1, "reduction_factor": 2}
    curves = planted_curves([("adam", 10.0), ("schedulefree", 10.0), ("sgd", 100.0)])
    reached = replayed_epochs(curves, adaptive, epochs=4, workers=3)
    assert reached == {("adam", 1e-3): 4, ("schedulefree", 1e-3): 4, ("sgd", 1e-3): 1}
    # One trial at a time with SGD first in the grid: it reaches the rung alone and passes it.
    curves = planted_curves([("sgd", 100.0), ("adam", 10.0), ("schedulefree", 10.0)])
    assert replayed_epochs(curves, adaptive, epochs=4, workers=1)[("sgd", 1e-3)] == 4
