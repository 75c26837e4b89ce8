"""The study engine: a search space becomes Ray Tune trials; their reports become Parquet rows.

Stage 1 runs the first-order trials (a grid, or an Optuna search); stage 2, when the space asks
for it, runs one L-BFGS trial per successful first-order trial, started from that trial's final
checkpoint and pointing back to it (`parent_trial_id`); stage 3 ("evaluate"), when asked for,
runs one evaluation trial per finished model of the stages before (`study.evaluate`). Each stage
is its own Tune experiment under `<storage>/<name>/ray/`, so an interrupted study resumes stage by
stage, and a finished trial of any stage never runs again.
"""

from __future__ import annotations

import _thread
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.error import TuneError

from search_spaces import SearchSpace
from study.adaptive import EPOCH, adaptive_scheduler
from study.points import PerOptimizerLrSpace, TrialPoint, first_order_param_space, later_stage_space, run_values
from study.progress import ProgressCallback
from study.results import ResultsStore, curve_row, score_rows
from study.settings import Launch, Resources
from study.trials import SharedInputs, first_order_trainable, lbfgs_trainable
from trainables.core.optimizers import OPTIMIZERS

METRIC = "val_force_rmse_mev_a"


@dataclass
class StudyContext:
    """What every row of the study carries, and where the study lives."""

    name: str
    folder: Path
    system: str
    mode: str
    test_sets: list[str]
    store: ResultsStore


def trial_meta(ctx: StudyContext, trial_id: str, stage: str, config: dict[str, Any]) -> dict[str, Any]:
    """The fields of every row of a trial (`config`: its Ray config, of any stage), under `trial_id`
    and `stage` (an evaluation's rows: those of the model it evaluated)."""
    point, values = TrialPoint.of(config), run_values(config)
    return {
        "study": ctx.name, "trial_id": trial_id, "stage": stage, "parent_trial_id": point.parent_trial_id,
        "optimizer": point.optimizer, "optimizer_order": list(OPTIMIZERS).index(point.optimizer),
        "lr": float(point.lr), "seed": int(point.seed),
        "system": ctx.system, "mode": ctx.mode, "epochs": values.get("epochs"),
        "batch_size": values.get("batch_size"), "dtype": values.get("dtype"),
        **point.axes(),  # `mode` stays the study's: no context
    }


def trial_error_message(trial) -> str:
    """The last line of the exception a failed trial raised (from Ray's pickled error or error file)."""
    error = trial.get_pickled_error()
    text = str(error) if error is not None else ""
    if not text.strip() and trial.error_file and Path(trial.error_file).is_file():
        text = Path(trial.error_file).read_text()
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "trial failed"


class RowsCallback(tune.Callback):
    """Turns each trial's reports into curve rows and its final report (or error) into score rows.

    Score rows are written at once; curve rows at most every `curve_flush_s` seconds, and always
    before a trial's checkpoint or scores are recorded, so that every epoch a resumed study will not
    rerun already has its row on disk."""

    curve_flush_s = 10.0

    def __init__(self, ctx: StudyContext, stage: str):
        self.ctx, self.stage = ctx, stage
        self._curves_written = time.monotonic()

    def _add_curve(self, row: dict[str, Any]) -> None:
        self.ctx.store.add("curves", [row], flush=False)
        if time.monotonic() - self._curves_written >= self.curve_flush_s:
            self._flush_curves()

    def _flush_curves(self) -> None:
        self.ctx.store.flush("curves")
        self._curves_written = time.monotonic()

    def _add_scores(self, rows: list[dict[str, Any]]) -> None:
        self._flush_curves()
        self.ctx.store.add("scores", rows)

    def _meta(self, trial) -> dict[str, Any]:
        return trial_meta(self.ctx, trial.trial_id, self.stage, trial.config)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.ctx.store.has_final(trial.trial_id, self.stage):
            # Finished just before a driver crash that Tune's saved state did not see: on resume the
            # trial comes back from its last checkpoint and reports again. The rows written first stand.
            return
        meta = self._meta(trial)
        if result.get("kind") in ("epoch", "step"):
            self._add_curve(curve_row(meta, result))
        elif result.get("kind") == "final":
            scores = json.loads(result["scores_json"])
            self._add_scores(score_rows(meta, scores, self.ctx.test_sets, result["status"],
                                        result["wall_time_s"], int(result["steps"]),
                                        resumed_from_step=int(result.get("resumed_from_step", 0)),
                                        compile_time_s=result.get("compile_time_s", math.nan),
                                        environment=json.loads(result.get("environment_json", "{}")),
                                        cost=json.loads(result.get("cost_json", "{}"))))

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self._flush_curves()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._add_scores(score_rows(self._meta(trial), {}, self.ctx.test_sets, "error", 0.0, 0,
                                    error=trial_error_message(trial)))

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        if result.get("kind") != "final" and not self.ctx.store.has_final(trial.trial_id, self.stage):
            steps = int(result.get("steps", 0) or 0)
            rows = score_rows(self._meta(trial), {}, self.ctx.test_sets, "early_stopped",
                              float(result.get("wall_time_s", 0.0) or 0.0), steps,
                              compile_time_s=float(result.get("compile_time_s", math.nan)))
            self._add_scores([{**row, "stopped_at_epoch": result.get(EPOCH, 0)} for row in rows])

    def on_experiment_end(self, trials, **info):
        self._flush_curves()


def optuna_search(space: SearchSpace):
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(space=PerOptimizerLrSpace(dict(space.lr_ranges), list(space.seeds)), metric=METRIC,
                        mode="min", seed=0)


# A reused actor skips a worker's start and imports and keeps its compiled training step
# (trainables.speed.compiled): the next trial of the same architecture starts training at once.
REUSE_ACTORS = True


def tune_config(launch: Launch) -> tune.TuneConfig:
    """A grid or an Optuna search; with `[adaptive]`, Ray Tune's scheduler stopping losing cells (study.adaptive)."""
    space, concurrent = launch.space, launch.resources.max_concurrent or None
    scheduler = adaptive_scheduler(space.adaptive, space.name, launch.config.epochs) if space.adaptive else None
    if space.search == "grid":
        return tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=concurrent, reuse_actors=REUSE_ACTORS)
    return tune.TuneConfig(search_alg=optuna_search(space), scheduler=scheduler, num_samples=space.num_samples,
                           metric=METRIC, mode="min", max_concurrent_trials=concurrent, reuse_actors=REUSE_ACTORS)


def with_resources(fn, resources: Resources, **parameters):
    return tune.with_resources(tune.with_parameters(fn, **parameters),
                               {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial})


def _run_config(ctx: StudyContext, launch: Launch, stage: str, callback: tune.Callback | None = None) -> tune.RunConfig:
    """The stage's storage, retries and callbacks; what it prints follows `launch.verbose`."""
    progress = [ProgressCallback(stage)] if launch.verbose == 1 else []
    return tune.RunConfig(
        name=stage, storage_path=str((ctx.folder / "ray").resolve()),
        failure_config=tune.FailureConfig(max_failures=launch.resources.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[callback or RowsCallback(ctx, stage), *progress], verbose=1 if launch.verbose >= 2 else 0,
    )


def stage_tuner(ctx: StudyContext, launch: Launch, stage: str, trainable, param_space, tune_cfg: tune.TuneConfig,
           callback: tune.Callback | None = None) -> tune.Tuner:
    path = ctx.folder / "ray" / stage
    if launch.resume and tune.Tuner.can_restore(str(path.resolve())):
        # Restoring reads the stage's results where it left off, with a warning for every trial
        # that had not started (no result file yet): they are simply pending.
        analysis_log = logging.getLogger("ray.tune.analysis.experiment_analysis")
        level = analysis_log.level
        analysis_log.setLevel(logging.ERROR)
        try:
            return tune.Tuner.restore(str(path.resolve()), trainable=trainable, resume_errored=False,
                                      restart_errored=False, param_space=param_space)
        finally:
            analysis_log.setLevel(level)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_cfg,
                      run_config=_run_config(ctx, launch, stage, callback))


class StopOnCtrlC:
    """Ctrl-C during a Tune experiment: the first stops it the way Tune stops it (its experiment
    state saved, its trials stopped), the second at once.

    Tune's own Ctrl-C handler is kept out (`TUNE_DISABLE_SIGINT_HANDLER`): it stays installed after
    its experiment ends, so that a Ctrl-C between two stages only set the finished stage's flag and
    was lost, and it announces Ray's `Tuner.restore` instead of this project's `--resume`. This
    handler asks Tune to stop through Tune's own SIGUSR1 handler, which Tune installs when its
    experiment starts; before that, or at a second Ctrl-C, it raises KeyboardInterrupt. On leaving,
    both handlers are put back and `interrupted` says whether the experiment was stopped.

    Once Tune has saved its state it waits up to 5 s for its trial actors to stop, which an actor
    still starting or amid a long epoch does not do sooner; that wait is cut short by a second,
    simulated Ctrl-C: the actors end with the driver's Ray anyway."""

    # Silenced once stopped: Tune's notices name Ray's Tuner.restore, not --resume, and its results
    # of the stopped stage warn of every trial that had not reported yet.
    QUIET_LOGGERS = ("ray.tune.tune", "ray.tune.analysis.experiment_analysis")
    TUNE_WAIT_FOR_TRIALS = "_cleanup_trials"  # ray.tune.execution.tune_controller, after the state is saved

    def __enter__(self) -> "StopOnCtrlC":
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        self.interrupted = False
        self._left, self._lock = threading.Event(), threading.Lock()
        self._before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGUSR1)
        self._log_levels = {name: logging.getLogger(name).level for name in self.QUIET_LOGGERS}
        signal.signal(signal.SIGINT, self._on_ctrl_c)
        return self

    def _on_ctrl_c(self, signum, frame) -> None:
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if self.interrupted or tune_stop is self._before[1] or not callable(tune_stop):
            raise KeyboardInterrupt
        self.interrupted = True
        for name in self.QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        tune_stop(signum, frame)
        threading.Thread(target=self._cut_short_the_wait_for_trials, daemon=True).start()

    def _cut_short_the_wait_for_trials(self) -> None:
        main = threading.main_thread().ident
        while not self._left.wait(0.1):
            if _runs(sys._current_frames().get(main), self.TUNE_WAIT_FOR_TRIALS):
                with self._lock:
                    if not self._left.is_set():
                        _thread.interrupt_main()  # to _on_ctrl_c, which raises KeyboardInterrupt
                return

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._left.set()
        signal.signal(signal.SIGINT, self._before[0])
        signal.signal(signal.SIGUSR1, self._before[1])
        for name, level in self._log_levels.items():
            logging.getLogger(name).setLevel(level)


def _runs(frame, function: str) -> bool:
    """Whether `function` is on the stack that ends in `frame`."""
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


def fit(tuner: tune.Tuner, store: ResultsStore) -> tune.ResultGrid:
    """`tuner.fit()`; KeyboardInterrupt once a Ctrl-C stopped it (`StopOnCtrlC`): the results of an
    interrupted stage are not the stage's results, and the study goes no further. A results write
    that failed in a callback (a full disk), which Tune reports as a `TuneError` holding only the
    traceback's text, is raised as the `StorageError` it was."""
    with StopOnCtrlC() as ctrl_c:
        try:
            grid = tuner.fit()
        except TuneError:
            if store.failed_write is not None:
                raise store.failed_write from None
            raise
    if ctrl_c.interrupted:
        raise KeyboardInterrupt
    return grid


def run_first_order(ctx: StudyContext, launch: Launch, shared: SharedInputs) -> tune.ResultGrid:
    """The first-order stage: the space's grid or Optuna search, one fine-tuning trial per point."""
    trainable = with_resources(first_order_trainable, launch.resources, shared=shared,
                                checkpoint_every_s=launch.resources.checkpoint_every_s)
    tuner = stage_tuner(ctx, launch, "first_order", trainable, first_order_param_space(launch.space, launch.config),
                   tune_config(launch))
    return fit(tuner, ctx.store)


def lbfgs_param_space(grid: tune.ResultGrid, space: SearchSpace) -> dict[str, Any] | None:
    parents = [r for r in grid if r.error is None and r.metrics.get("status") == "ok" and r.checkpoint]
    if not parents:
        return None
    return later_stage_space([{**r.config, "parent_trial_id": r.metrics["trial_id"],
                               "parent_checkpoint": r.checkpoint.path, "lbfgs": dict(space.lbfgs)} for r in parents])


def run_lbfgs(ctx: StudyContext, launch: Launch, grid: tune.ResultGrid, shared: SharedInputs) -> tune.ResultGrid | None:
    """The L-BFGS stage: one refinement trial per successful first-order trial of `grid`."""
    param_space = lbfgs_param_space(grid, launch.space)
    if param_space is None:
        return None
    trainable = with_resources(lbfgs_trainable, launch.resources, shared=shared)
    tuner = stage_tuner(ctx, launch, "lbfgs", trainable, param_space, tune.TuneConfig(reuse_actors=REUSE_ACTORS))
    return fit(tuner, ctx.store)
