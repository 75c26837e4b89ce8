"""Learning-rate schedules of a fine-tuning run, the same for every optimizer (`FinetuneConfig.schedule`).

With peak lr `lr`, warm-up length W (`warmup_steps`) and T optimizer steps in the run, the update
of step t (0-based) uses

    lr_t = lr * warm(t) * decay(t) * s,    warm(t) = (t + 1) / W for t < W, else 1

- "constant": decay = 1 (with W = 0, the lr never changes);
- "cosine": decay(t) = (1 + cos(pi u)) / 2 with u = (t - W) / (T - W) after the warm-up: from lr
  down toward 0 at the end of the budget;
- "plateau": decay = 1 and the scale s, 1 at the start, is multiplied by `plateau_factor` whenever
  the validation loss has not improved for more than `plateau_patience` validations in a row: torch's
  ReduceLROnPlateau (mode min, relative threshold 1e-4, no cooldown; its floor, no reduction smaller
  than 1e-8, is not kept: far below these lrs) as mace uses it, with mace's
  defaults factor 0.8 and patience 50, stepped at each epoch's validation (mace validates once an
  epoch; validations within epochs, `val_every_steps`, leave training unchanged). The validation
  loss is mace's weighted loss over the validation set, `validation_loss`.

An optimizer whose spec has `supports_schedule` False (ScheduleFree) gets no decay and no plateau,
as its authors recommend and mace does; one that names a `warmup_argument` takes the warm-up in
its constructor (`warmup_hyper`) instead of from the schedule. This module imports no torch: the
config validates schedule names against `SCHEDULES` before the training stack loads.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

    from trainables.core.config import FinetuneConfig
    from trainables.core.loss import LossWeights
    from trainables.core.optimizers import OptimizerSpec

PLATEAU_THRESHOLD = 1e-4  # torch's ReduceLROnPlateau default (relative), which mace keeps


def cosine_decay(u: float) -> float:
    """(1 + cos(pi u)) / 2 at the fraction u in [0, 1] of the steps after the warm-up."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(u, 0.0), 1.0)))


@dataclass(frozen=True)
class Schedule:
    """A named schedule (see the module's formula): its `decay` of the fraction of post-warm-up steps
    done (None: 1), and whether it lowers the lr on a validation plateau."""

    decay: Callable[[float], float] | None = None
    on_plateau: bool = False


SCHEDULES: dict[str, Schedule] = {
    "constant": Schedule(),
    "cosine": Schedule(decay=cosine_decay),
    "plateau": Schedule(on_plateau=True),
}


def lr_factor(step: int, schedule: str, total_steps: int, warmup_steps: int) -> float:
    """warm(t) * decay(t) of the module's formula for optimizer step `step` (0-based) of `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay = SCHEDULES[schedule].decay
    return 1.0 if decay is None else decay((step - warmup_steps) / max(total_steps - warmup_steps, 1))


@dataclass
class Plateau:
    """ReduceLROnPlateau's rule on a scale: after more than `patience` validations in a row without a
    loss below best * (1 - 1e-4), the scale is multiplied by `factor` and the count starts again."""

    factor: float
    patience: int
    best: float = math.inf
    bad_validations: int = 0
    scale: float = 1.0

    def observe(self, loss: float) -> None:
        if loss < self.best * (1.0 - PLATEAU_THRESHOLD):
            self.best, self.bad_validations = loss, 0
        else:
            self.bad_validations += 1
        if self.bad_validations > self.patience:
            self.scale *= self.factor
            self.bad_validations = 0


class LrSchedule:
    """Sets each parameter group's lr to its peak lr (the lr it was built with) times
    `lr_factor(steps)` times the plateau's scale: `step()` after every optimizer step,
    `observe_validation(loss)` at every epoch's validation. Its state (steps taken, the plateau's
    counters) goes into a run's checkpoint."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: Callable[[int], float], plateau: Plateau | None):
        self.optimizer, self.factor, self.plateau = optimizer, factor, plateau
        self.peak_lrs = [group["lr"] for group in optimizer.param_groups]
        self.steps = 0
        self._apply()

    def step(self) -> None:
        self.steps += 1
        self._apply()

    def observe_validation(self, loss: float) -> None:
        if self.plateau is not None:
            self.plateau.observe(loss)
            self._apply()

    def lr(self) -> float:
        """The first parameter group's lr for the next step."""
        return self.optimizer.param_groups[0]["lr"]

    def _apply(self) -> None:
        scale = self.factor(self.steps) * (1.0 if self.plateau is None else self.plateau.scale)
        for group, peak in zip(self.optimizer.param_groups, self.peak_lrs):
            group["lr"] = peak * scale

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "plateau": None if self.plateau is None else asdict(self.plateau)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]
        if self.plateau is not None:
            self.plateau = Plateau(**state["plateau"])
        self._apply()


def warmup_hyper(spec: OptimizerSpec, warmup_steps: int) -> dict[str, int]:
    """The constructor argument carrying the warm-up, for an optimizer that takes it there ({} otherwise)."""
    return {spec.warmup_argument: warmup_steps} if spec.warmup_argument is not None and warmup_steps else {}


def make_schedule(optimizer: torch.optim.Optimizer, config: FinetuneConfig, total_steps: int,
                  spec: OptimizerSpec) -> LrSchedule:
    """The run's `LrSchedule` over `total_steps` optimizer steps (a constant one holds the peak lr)."""
    name = config.schedule if spec.supports_schedule else "constant"
    warmup = 0 if spec.warmup_argument is not None else config.warmup_steps  # else in its constructor
    plateau = Plateau(config.plateau_factor, config.plateau_patience) if SCHEDULES[name].on_plateau else None
    return LrSchedule(optimizer, lambda step: lr_factor(step, name, total_steps, warmup), plateau)


def validation_loss(val: dict[str, float], weights: LossWeights) -> float:
    """mace's weighted loss over the validation set from its RMSEs: w_E <(dE/N)^2> + w_F <dF^2> in eV
    and eV/A (every force component of the set counts once; no stress term: validation scores none)."""
    return (weights.energy * (val["energy_rmse_mev_atom"] / 1000.0) ** 2
            + weights.forces * (val["force_rmse_mev_a"] / 1000.0) ** 2)
