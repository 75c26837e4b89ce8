"""A study's live progress in a few lines, instead of Ray Tune's per-trial tables.

One line per finished trial, and a status line at most every `every_s` seconds while anything
changed: trials done / running / pending / failed, elapsed time, an estimate of the time left (the
finished trials' pace), and the best validation force RMSE so far. In a resumed stage (`--resume`,
some trials done before) the line says how many were done before and counts the time and the
pace since the resume. `python -m study.launch
--verbose` shows Ray's tables instead, `--quiet` neither.
"""

from __future__ import annotations

import math
import time
from typing import Callable

from ray import tune

from study.points import TrialPoint

DONE = ("TERMINATED",)
FAILED = ("ERROR",)


def format_duration(seconds: float) -> str:
    """'1h02m', '3m05s', '42s'; '?' for an unknown (infinite or NaN) duration."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def status_counts(statuses: list[str]) -> dict[str, int]:
    """done, running, pending and failed among Tune trial statuses."""
    return {"done": sum(s in DONE for s in statuses), "running": statuses.count("RUNNING"),
            "pending": sum(s in ("PENDING", "PAUSED") for s in statuses), "failed": sum(s in FAILED for s in statuses)}


def time_left(elapsed_s: float, finished: int, total: int) -> float:
    """The remaining trials at the finished ones' pace; inf before the first finishes."""
    return math.inf if finished == 0 else elapsed_s / finished * (total - finished)


class ProgressCallback(tune.Callback):
    """Prints a stage's progress (see the module's docstring) through `echo`."""

    def __init__(self, stage: str, every_s: float = 30.0, echo: Callable[[str], None] = print):
        self.stage, self.every_s, self.echo = stage, every_s, echo
        self.best: tuple[float, str] | None = None
        self.setup()

    def setup(self, **info):
        """At each start of the stage, the first or a resumed one (Tune restores this callback as
        it was pickled when the stage was created, clock included)."""
        self.start, self.last_print, self.last_counts = time.monotonic(), -math.inf, None
        self.finished_before: int | None = None  # at the first step: trials a resumed stage had finished

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        value = result.get("val_force_rmse_mev_a", math.nan)
        if isinstance(value, (int, float)) and math.isfinite(value) and (self.best is None or value < self.best[0]):
            self.best = (value, TrialPoint.of(trial.config).label())
        shown = f"val F {value:.1f} meV/A" if isinstance(value, (int, float)) and math.isfinite(value) else \
            f"status {result.get('status', 'done')}"
        self.echo(f"[{self.stage}] done: {TrialPoint.of(trial.config).label()}  {shown}  "
                  f"{format_duration(result.get('wall_time_s', math.nan))}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.echo(f"[{self.stage}] failed: {TrialPoint.of(trial.config).label()}")

    def on_step(self, iteration, trials, **info):
        counts = status_counts([t.status for t in trials])
        if self.finished_before is None:
            self.finished_before = counts["done"] + counts["failed"]
        now = time.monotonic()
        if counts == self.last_counts or now - self.last_print < self.every_s:
            return
        self.last_counts, self.last_print = counts, now
        self.echo(self.status_line(counts, len(trials), now - self.start))

    def on_experiment_end(self, trials, **info):
        self.echo(self.status_line(status_counts([t.status for t in trials]), len(trials),
                                   time.monotonic() - self.start))

    def status_line(self, counts: dict[str, int], total: int, elapsed_s: float) -> str:
        before = self.finished_before or 0
        finished = counts["done"] + counts["failed"] - before
        best = f"; best val F {self.best[0]:.1f} meV/A ({self.best[1]})" if self.best else ""
        resumed = (f" ({before} before the resume)", " since the resume") if before else ("", "")
        return (f"[{self.stage}] {counts['done']}/{total} done{resumed[0]}, {counts['running']} running, "
                f"{counts['pending']} pending, {counts['failed']} failed; {format_duration(elapsed_s)} elapsed"
                f"{resumed[1]}, ~{format_duration(time_left(elapsed_s, finished, total - before))} left{best}")
