"""The compact progress lines a study prints instead of Ray Tune's tables."""

import math
from types import SimpleNamespace

from study.progress import ProgressCallback, format_duration, status_counts, time_left


def test_durations_counts_and_time_left():
    assert [format_duration(s) for s in (42, 185, 3725, math.inf)] == ["42s", "3m05s", "1h02m", "?"]
    assert status_counts(["TERMINATED", "RUNNING", "PENDING", "ERROR", "TERMINATED"]) == {
        "done": 2, "running": 1, "pending": 1, "failed": 1}
    assert time_left(60.0, 3, 9) == 120.0 and time_left(60.0, 0, 9) == math.inf


def trial(status, optimizer="adam", lr=1e-3, seed=0, val=None):
    result = {"val_force_rmse_mev_a": val, "wall_time_s": 15.0} if val is not None else {}
    return SimpleNamespace(status=status, config={"optimizer": optimizer, "lr": lr, "seed": seed, "finetune": {}},
                           last_result=result)


def test_a_line_per_finished_trial_and_a_status_line_when_something_changed():
    lines = []
    progress = ProgressCallback("first_order", every_s=0.0, echo=lines.append)
    trials = [trial("RUNNING"), trial("PENDING", "sgd")]
    progress.on_step(0, trials)
    progress.on_step(1, trials)  # nothing changed: no line
    trials[0] = trial("TERMINATED", val=73.8)
    progress.on_trial_complete(2, trials, trials[0])
    progress.on_step(2, trials)
    assert lines[0].startswith("[first_order] 0/2 done, 1 running, 1 pending, 0 failed; ")
    assert lines[0].endswith("~? left")
    assert lines[1] == "[first_order] done: adam lr 0.001 seed 0  val F 73.8 meV/A  15s"
    assert lines[2].startswith("[first_order] 1/2 done, 0 running, 1 pending, 0 failed;")
    assert lines[2].endswith("best val F 73.8 meV/A (adam lr 0.001 seed 0)")
    assert len(lines) == 3


def test_a_resumed_stage_counts_its_time_and_pace_since_the_resume():
    lines = []
    progress = ProgressCallback("first_order", every_s=0.0, echo=lines.append)
    progress.start -= 600  # as pickled when the stage was created, ten minutes before this run
    progress.setup()  # Tune restores the stage: its clock starts again
    trials = [trial("TERMINATED", val=70.0), trial("RUNNING", "sgd"), trial("PENDING", "sgd", seed=1)]
    progress.on_step(0, trials)
    assert lines[0].startswith("[first_order] 1/3 done (1 before the resume), 1 running, 1 pending, 0 failed; 0s "
                               "elapsed since the resume, ~? left"), lines[0]
    trials[1] = trial("TERMINATED", "sgd", val=72.0)
    progress.start -= 30  # this run's 30 s for one trial: one more left at that pace
    progress.on_step(1, trials)
    assert "30s elapsed since the resume, ~30s left" in lines[1], lines[1]
