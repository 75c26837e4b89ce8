"""Adaptive studies: Ray Tune's early-stopping schedulers, deciding per cell of the grid.

A space's `[adaptive]` table (or `adaptive = "asha"` for the defaults) stops losing trials early
with a scheduler of Ray Tune (`SCHEDULERS`: ASHA, asynchronous HyperBand, the median stopping
rule), reading a validation metric of the epoch reports at epoch milestones.

The seeds of one cell, (optimizer, lr[, protocol, ...]), are decided together (`CellScheduler`): the
wrapped Ray scheduler sees one trial per cell, fed by the cell's pace-setter (whichever seed first
reports an epoch the cell has not reached yet: in a grid, where seeds vary slowest, the first
seed). Its verdict binds every seed: a cell stopped at epoch k has each of its seeds stopped when
it reaches epoch k, so a cell is finished or stopped as a whole and the statistics keep their
pairs of seeds. Why a wrapper, not Ray's scheduler per trial: per trial, ASHA would stop seed 1 of
a cell and keep seed 0, and the cell would have neither a full set of seeds nor a stop epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler

from trainables.core.config import unknown_key_hint, unknown_keys
from trainables.errors import ConfigError

EPOCH = "epoch"  # the epoch reports' time attribute (fractional for validations within an epoch)
DEFAULT_METRIC = "val_force_rmse_mev_a"  # lower is better, as every validation metric the curves hold


@dataclass(frozen=True)
class AdaptiveSettings:
    """A space's `[adaptive]`: which scheduler (`SCHEDULERS`), the validation `metric` it reads
    from the epoch reports (lower is better), the `grace_period` in epochs before anything is
    stopped, ASHA's `reduction_factor` (a rung keeps the best 1/factor of the cells that reach it)
    and `brackets` (more than one: asynchronous HyperBand), and the median rule's `min_samples`
    (cells that must have reached an epoch before one is compared with their median)."""

    scheduler: str = "asha"
    metric: str = DEFAULT_METRIC
    grace_period: float = 2
    reduction_factor: float = 3
    brackets: int = 1
    min_samples: int = 3

    @classmethod
    def from_dict(cls, space: str, table: dict[str, Any]) -> "AdaptiveSettings":
        """From a space's `[adaptive]` table; raises `ConfigError` naming the space for an unknown
        key, scheduler or a value out of range."""
        if not isinstance(table, dict):
            raise ConfigError(f"space {space!r}: adaptive must be a scheduler's name or a table, got {table!r}")
        if unknown := unknown_keys(cls, table):
            raise ConfigError(f"space {space!r}: [adaptive] has unknown key {unknown_key_hint(cls, unknown)}")
        settings = cls(**table)
        settings.check(space, set(table))
        return settings

    def check(self, space: str, given: set[str]) -> None:
        spec = SCHEDULERS.get(self.scheduler)
        if spec is None:
            raise ConfigError(f"space {space!r}: unknown adaptive scheduler {self.scheduler!r}; known: "
                              f"{', '.join(SCHEDULERS)}")
        if unread := sorted(given - {"scheduler", "metric", *spec.reads}):
            raise ConfigError(f"space {space!r}: the {self.scheduler} scheduler does not read {', '.join(unread)}")
        problems = [f"{name} must be {rule}" for name, rule, ok in (
            ("grace_period", "> 0 epochs", self.grace_period > 0),
            ("reduction_factor", "> 1", self.reduction_factor > 1),
            ("brackets", "an integer >= 1", isinstance(self.brackets, int) and self.brackets >= 1),
            ("min_samples", "an integer >= 1", isinstance(self.min_samples, int) and self.min_samples >= 1),
            ("metric", "a validation metric's name (val_...)", str(self.metric).startswith("val_"))) if not ok]
        if problems:
            raise ConfigError(f"space {space!r}: [adaptive] " + "; ".join(problems))


@dataclass(frozen=True)
class SchedulerSpec:
    """A Ray Tune scheduler: `build(settings, epochs)` and the `AdaptiveSettings` fields it reads."""

    build: Callable[[AdaptiveSettings, int], TrialScheduler]
    reads: tuple[str, ...]


def _asha(settings: AdaptiveSettings, epochs: int) -> TrialScheduler:
    # stop_last_trials=False: a cell that passes every rung ends with its own last epoch and its
    # scores; Ray's default would stop it at max_t, before the trial's final report.
    return ASHAScheduler(time_attr=EPOCH, metric=settings.metric, mode="min", max_t=epochs,
                         grace_period=settings.grace_period, reduction_factor=settings.reduction_factor,
                         brackets=settings.brackets, stop_last_trials=False)


def _median(settings: AdaptiveSettings, epochs: int) -> TrialScheduler:
    return MedianStoppingRule(time_attr=EPOCH, metric=settings.metric, mode="min",
                              grace_period=settings.grace_period, min_samples_required=settings.min_samples,
                              hard_stop=True)


SCHEDULERS: dict[str, SchedulerSpec] = {
    "asha": SchedulerSpec(_asha, reads=("grace_period", "reduction_factor", "brackets")),
    "median": SchedulerSpec(_median, reads=("grace_period", "min_samples")),
}


def cell_of(config: dict[str, Any]) -> tuple:
    """A trial's cell: its point on every axis of the space but the seed ((name, value) pairs:
    optimizer, lr or an Optuna trial's `lr_<optimizer>`, and protocol or any other axis a space
    has), without the study's fixed tables (`finetune`, `protocols`)."""
    return tuple(sorted((k, v) for k, v in config.items() if k != "seed" and not isinstance(v, (dict, list))))


class CellTrial:
    """What the wrapped scheduler sees of a cell: an id, hashable by identity like a Trial."""

    def __init__(self, cell: tuple):
        self.trial_id = "cell:" + ",".join(f"{k}={v}" for k, v in cell)

    def __repr__(self) -> str:
        return self.trial_id


class CellScheduler(FIFOScheduler):
    """A Ray Tune scheduler that runs another (`SCHEDULERS`) on cells instead of trials (see the
    module's docstring). Epochs at or past the budget are never stopped: a trial that reached its
    last epoch reports its scores. A resumed study rebuilds which cells were stopped, and where,
    from the restored trials (a stopped trial's last result is an epoch report, a finished one's
    the final one), so the seeds of a stopped cell that had not finished stop at the same epoch."""

    def __init__(self, settings: AdaptiveSettings, epochs: int):
        super().__init__()
        if settings.grace_period >= epochs:
            raise ConfigError(f"adaptive: grace_period {settings.grace_period:g} epochs leaves nothing to stop "
                              f"in a budget of {epochs} epochs: make it smaller")
        self.settings, self.epochs = settings, epochs
        self.inner = SCHEDULERS[settings.scheduler].build(settings, epochs)
        self.cells: dict[tuple, CellTrial] = {}
        self.furthest: dict[tuple, float] = {}  # the latest epoch the cell's pace-setter reported
        self.stopped_at: dict[tuple, float] = {}  # stopped cells: the epoch of the verdict

    @property
    def metric(self):
        return self.settings.metric

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # the cell's metric is the space's ([adaptive] metric); the searcher keeps its own

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        cell = cell_of(trial.config)
        if cell not in self.cells:
            self.cells[cell] = CellTrial(cell)
            self.inner.on_trial_add(tune_controller, self.cells[cell])
        if trial.status == Trial.TERMINATED:
            self._restore(cell, trial.last_result or {})

    def _restore(self, cell: tuple, last: dict[str, Any]) -> None:
        if last.get("kind") == "final":  # finished: the cell was kept to the end, its siblings run on
            self.furthest[cell] = self.epochs
        elif EPOCH in last:  # stopped at its last epoch report
            self.stopped_at[cell] = min(self.stopped_at.get(cell, last[EPOCH]), last[EPOCH])
            self.furthest[cell] = max(self.furthest.get(cell, 0.0), last[EPOCH])

    def on_trial_result(self, tune_controller, trial: Trial, result: dict[str, Any]) -> str:
        epoch = result.get(EPOCH)
        if epoch is None or self.settings.metric not in result:
            return TrialScheduler.CONTINUE
        cell = cell_of(trial.config)
        if cell in self.stopped_at:
            return TrialScheduler.STOP if epoch >= self.stopped_at[cell] else TrialScheduler.CONTINUE
        if epoch <= self.furthest.get(cell, 0.0) or epoch >= self.epochs:
            return TrialScheduler.CONTINUE
        self.furthest[cell] = epoch
        # A PAUSE (the median rule yielding while it has too few cells) continues: the seeds of a cell
        # keep their pace together.
        if self.inner.on_trial_result(tune_controller, self.cells[cell], result) != TrialScheduler.STOP:
            return TrialScheduler.CONTINUE
        self.stopped_at[cell] = epoch
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        return f"CellScheduler over {self.inner.debug_string()}; stopped cells: {len(self.stopped_at)}"


def adaptive_scheduler(adaptive: dict[str, Any], space: str, epochs: int) -> CellScheduler:
    """The scheduler of a space's `[adaptive]` table for a budget of `epochs`."""
    return CellScheduler(AdaptiveSettings.from_dict(space, adaptive), epochs)
