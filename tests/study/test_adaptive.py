"""Adaptive studies (study.adaptive): Ray Tune's schedulers deciding per cell, the seeds of a cell
stopped together, a resumed study's stopped cells kept stopped (the planted study is interrupted
and resumed through the CLI, with real Ray)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from search_spaces import space_from_dict
from study.adaptive import AdaptiveSettings, CellScheduler, cell_of
from test_accidents import ENV, ROOT, _running, assert_quiet_resume
from trainables.errors import ConfigError

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def trial(lr: float, seed: int, optimizer: str = "adam", status: str = Trial.PENDING, last=None) -> Trial:
    made = Trial("adaptive_test", config={"optimizer": optimizer, "lr": lr, "seed": seed}, stub=True)
    made.set_status(status)
    if last is not None:
        made.run_metadata.last_result = last
    return made


def asha(epochs: int = 4, **settings) -> CellScheduler:
    return CellScheduler(AdaptiveSettings(**{"grace_period": 1, "reduction_factor": 2, **settings}), epochs)


def report(scheduler: CellScheduler, of: Trial, epoch: float, value: float) -> str:
    return scheduler.on_trial_result(None, of, {"kind": "epoch", "epoch": epoch, "val_force_rmse_mev_a": value})


def added(scheduler: CellScheduler, *trials: Trial) -> tuple[Trial, ...]:
    for each in trials:
        scheduler.on_trial_add(None, each)
    return trials


def test_a_cell_worse_at_the_grace_period_is_stopped_with_every_seed_there():
    scheduler = asha()
    good0, bad0, good1, bad1 = added(scheduler, trial(1e-3, 0), trial(1e-6, 0), trial(1e-3, 1), trial(1e-6, 1))
    assert report(scheduler, good0, 1, 10.0) == CONTINUE
    assert report(scheduler, bad0, 1, 50.0) == STOP
    assert scheduler.stopped_at == {cell_of(bad1.config): 1}
    assert report(scheduler, bad1, 0.5, 1.0) == CONTINUE  # before the cell's stop epoch, even if better
    assert report(scheduler, bad1, 1, 1.0) == STOP  # its sibling's verdict, whatever its own value
    # A kept cell's other seed is no pace-setter where the cell has been: even a bad value continues.
    assert report(scheduler, good1, 1, 500.0) == CONTINUE


def test_the_last_epoch_is_never_stopped():
    scheduler = asha(epochs=2)
    good, bad = added(scheduler, trial(1e-3, 0), trial(1e-6, 0))
    assert report(scheduler, good, 1, 10.0) == CONTINUE
    assert report(scheduler, bad, 1, 10.0) == CONTINUE  # not worse than the cutoff
    assert report(scheduler, good, 2, 5.0) == CONTINUE
    assert report(scheduler, bad, 2, 500.0) == CONTINUE  # its final report (the scores) comes next


def test_a_resumed_study_keeps_a_stopped_cell_stopped_where_it_was():
    scheduler = asha()
    stopped = trial(1e-6, 0, status=Trial.TERMINATED, last={"kind": "epoch", "epoch": 1})
    finished = trial(1e-3, 0, status=Trial.TERMINATED, last={"kind": "final", "val_force_rmse_mev_a": 9.0})
    sibling_of_stopped, sibling_of_finished, other = trial(1e-6, 1), trial(1e-3, 1), trial(5e-4, 0)
    added(scheduler, stopped, finished, sibling_of_stopped, sibling_of_finished, other)
    assert scheduler.stopped_at == {cell_of(sibling_of_stopped.config): 1}
    assert report(scheduler, sibling_of_stopped, 1, 1.0) == STOP
    assert report(scheduler, other, 1, 1.0) == CONTINUE  # a rung's value that a pace-setter at 1e6 would fail
    assert report(scheduler, sibling_of_finished, 1, 1e6) == CONTINUE
    assert report(scheduler, sibling_of_finished, 3, 1e6) == CONTINUE  # its cell was kept to the end


@pytest.mark.parametrize("table, message", [
    ({"scheduler": "hyperband"}, "unknown adaptive scheduler 'hyperband'; known: asha, median"),
    ({"scheduler": "median", "reduction_factor": 2}, "the median scheduler does not read reduction_factor"),
    ({"grace_periods": 2}, "unknown key 'grace_periods' (did you mean 'grace_period'?)"),
    ({"reduction_factor": 1}, "reduction_factor must be > 1"),
    ({"metric": "force_rmse_mev_a"}, "metric must be a validation metric's name (val_...)"),
])
def test_a_bad_adaptive_table_names_what_is_wrong(table, message):
    with pytest.raises(ConfigError, match="space 'twin'") as error:
        space_from_dict("twin", {"optimizers": ["adam"], "lrs": [1e-3], "adaptive": table})
    assert message in str(error.value)


def test_adaptive_as_a_name_is_its_scheduler_with_the_defaults():
    space = space_from_dict("twin", {"optimizers": ["adam"], "lrs": [1e-3], "adaptive": "median"})
    assert space.adaptive == {"scheduler": "median"}


def test_a_grace_period_as_long_as_the_budget_is_refused():
    with pytest.raises(ConfigError, match="grace_period 3 epochs leaves nothing to stop in a budget of 3 epochs"):
        CellScheduler(AdaptiveSettings(grace_period=3), epochs=3)


PLANTED = """
optimizers = ["adam", "schedulefree", "sgd"]
seeds = [0, 1]
[lr_by_optimizer]
adam = 1e-3
schedulefree = 1e-3
sgd = 1e-7
[adaptive]
scheduler = "median"
grace_period = 1
min_samples = 2
[fixed]
data_size = "smoke"
epochs = 3
batch_size = 4
mode = "replay"
replay_samples = 8
compile = false
"""


@pytest.fixture(scope="module")
def planted_study(cache_root, smoke_inputs, tmp_path_factory, launch_args):
    """SGD at lr 1e-7 beside Adam and ScheduleFree at 1e-3: after one epoch it has barely moved from
    the foundation, the others have fine-tuned. One trial at a time, so the cells meet the median
    rule in the grid's order (seed 0 of each cell first, SGD's last). The study is stopped (SIGTERM)
    once every trial but SGD's seed 1 has its rows, and resumed: SGD's seed 1 then runs alone, with
    no other cell's epochs to compare it with, so only the restored verdict on its cell can stop it.
    Returns the study folder, the resumed launch's output and the scores written before the stop."""
    folder = tmp_path_factory.mktemp("adaptive")
    space = folder / "planted.toml"
    space.write_text(PLANTED)
    storage, log = folder / "studies", folder / "driver.log"
    study = storage / "planted"
    command = launch_args(storage, "--name", "planted", "--max-concurrent", "1", space=str(space))
    with _running(command, log) as driver:
        _wait_for_trials(study, 5, driver, log)
        os.kill(driver.pid, signal.SIGTERM)
        assert driver.wait(timeout=60) == 128 + signal.SIGTERM, log.read_text(errors="replace")[-3000:]
    before = pq.read_table(study / "results" / "scores.parquet").to_pandas()
    resumed = subprocess.run(launch_args(storage, "--name", "planted", "--max-concurrent", "1", "--resume",
                                         space=str(space)), cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_quiet_resume(resumed)
    return study, resumed.stdout, before


def _wait_for_trials(study: Path, trials: int, driver: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Until the study's scores hold the rows of `trials` trials; fails if the driver ends first."""
    scores_file, deadline = study / "results" / "scores.parquet", time.time() + timeout
    while time.time() < deadline:
        assert driver.poll() is None, f"the study ended before its stop\n{log.read_text(errors='replace')[-3000:]}"
        # The bytes first: the driver renames a new table over the file, which a reader that opens
        # it twice (footer, then pages) may see between its two opens.
        if scores_file.is_file() and len(set(pq.read_table(pa.BufferReader(scores_file.read_bytes()))
                                             .column("trial_id").to_pylist())) >= trials:
            return
        time.sleep(0.1)
    raise AssertionError(f"no rows of {trials} trials within {timeout} s\n{log.read_text(errors='replace')[-3000:]}")


def test_the_planted_cell_is_stopped_at_the_grace_period_and_its_rows_say_so(planted_study):
    folder, _, _ = planted_study
    scores = pq.read_table(folder / "results" / "scores.parquet").to_pandas().drop_duplicates("trial_id")
    stopped = scores[scores["status"] == "early_stopped"]
    assert sorted(stopped["optimizer"]) == ["sgd", "sgd"] and set(stopped["stopped_at_epoch"]) == {1}
    assert (stopped["training_time_s"] > 0).all()  # wall time less compile time, up to the stop
    assert set(scores.loc[scores["optimizer"] != "sgd", "status"]) == {"ok"}
    curves = pq.read_table(folder / "results" / "curves.parquet").to_pandas()
    reached = curves.groupby("trial_id")["step"].max()
    assert set(reached[stopped["trial_id"]]) == {1}  # each stopped trial keeps its curve to epoch 1


def test_the_closing_tables_label_stopped_cells_apart_from_failures(planted_study):
    _, stdout, _ = planted_study
    assert "stopped early: sgd lr=1e-07 at epoch 1 (2 seeds)" in stdout
    assert "not ok" not in stdout
    assert "Recommendation: each optimizer" in stdout


def test_a_resumed_study_keeps_its_stopped_cell_stopped_and_runs_every_other_trial_once(planted_study):
    folder, _, before = planted_study
    stopped_before = before.drop_duplicates("trial_id").query("status == 'early_stopped'")
    assert len(before.drop_duplicates("trial_id")) == 5 and list(stopped_before["seed"]) == [0], \
        "SGD's seed 1 finished before the study was stopped: the resume had nothing to decide"
    scores = pq.read_table(folder / "results" / "scores.parquet").to_pandas()
    assert not scores.duplicated(["trial_id", "stage", "test_set"]).any()
    trials = scores.drop_duplicates("trial_id")
    assert len(trials) == 6 and not trials.duplicated(["optimizer", "seed"]).any()
    # The rows written before the stop stand as they were: none of their trials ran again.
    key = ["trial_id", "stage", "test_set"]
    pd.testing.assert_frame_equal(scores.set_index(key).loc[before.set_index(key).index, before.columns.drop(key)],
                                  before.set_index(key), check_dtype=False)
    stopped = trials[trials["status"] == "early_stopped"]
    assert sorted(stopped["seed"]) == [0, 1] and set(stopped["stopped_at_epoch"]) == {1}
    curves = pq.read_table(folder / "results" / "curves.parquet").to_pandas()
    assert not curves.duplicated(["trial_id", "stage", "step"]).any()
    for trial_id in trials.loc[trials["status"] == "ok", "trial_id"]:
        assert sorted(curves.loc[curves["trial_id"] == trial_id, "step"]) == [1, 2, 3], trial_id
