"""An exponential moving average (EMA) of a run's weights, as mace's `--ema --ema_decay 0.99`.

After every optimizer step the average moves toward the weights a run evaluates,
theta_ema <- d_t theta_ema + (1 - d_t) theta with d_t = min(decay, (1 + t) / (10 + t)) at the t-th
update (torch_ema's `ExponentialMovingAverage`, which mace uses, with its warm-up of the decay).
With `ema_decay` set, a run validates, checkpoints (the model file; the training state keeps the
raw weights and the average) and scores the average, and ends with it in the model, as mace does.

For an optimizer with train/eval weight sequences (`OptimizerSpec.has_train_eval_modes`,
ScheduleFree) the weights a run evaluates are its own average x_t, so the EMA is an average on top
of that one: each update switches the optimizer to its eval weights and back, restoring the
training weights bit for bit. (mace's own loop averages ScheduleFree's training sequence y_t and
evaluates that in place of x_t.)
"""

from __future__ import annotations

import contextlib
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch_ema import ExponentialMovingAverage

from trainables.core.optimizers import OptimizerSpec


@contextmanager
def evaluation_weights(parameters: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                       spec: OptimizerSpec) -> Iterator[None]:
    """Inside the block the parameters hold the weights the optimizer evaluates; after it, the
    training weights exactly as before (an optimizer without train/eval modes: nothing changes)."""
    if not spec.has_train_eval_modes:
        yield
        return
    kept = [p.detach().clone() for p in parameters]
    optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()  # its mode flag; the eval -> train interpolation is not bit-exact, so copy back
        with torch.no_grad():
            for parameter, value in zip(parameters, kept):
                parameter.copy_(value)


class WeightAverage:
    """The EMA of `model`'s parameters under `optimizer` (of `spec`), with decay `decay` in (0, 1)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, spec: OptimizerSpec, decay: float):
        self.parameters = list(model.parameters())
        self.optimizer, self.spec = optimizer, spec
        self.ema = ExponentialMovingAverage(self.parameters, decay=decay)

    def update(self) -> None:
        """One update, after an optimizer step (the optimizer in train mode)."""
        with evaluation_weights(self.parameters, self.optimizer, self.spec):
            self.ema.update()

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model for the block, the weights it held before after it."""
        with self.ema.average_parameters():
            yield

    def copy_to_model(self) -> None:
        """Put the averaged weights in the model for good (the end of a run)."""
        self.ema.copy_to()

    def state_dict(self) -> dict[str, Any]:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state)


def averaged(average: WeightAverage | None) -> contextlib.AbstractContextManager:
    """`average.applied()`, or a block that changes nothing for a run without an average."""
    return contextlib.nullcontext() if average is None else average.applied()


def make_average(model: torch.nn.Module, optimizer: torch.optim.Optimizer, spec: OptimizerSpec,
                 ema_decay: float | None) -> WeightAverage | None:
    """The run's weight average; None when `ema_decay` is None or 0 (off)."""
    return WeightAverage(model, optimizer, spec, ema_decay) if ema_decay else None
