"""The first-order fine-tuning loop: one epoch, evaluation, checkpoints (lr schedules in
trainables.core.schedules, the weight average in trainables.core.averaging).

A run reads top to bottom in `trainables.stages.finetune.run_finetune`; the pieces here are small and
testable on their own. Nothing here knows about Ray.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from trainables.core.loss import ErrorAccumulator, LossWeights, SetReference, eq1_loss, loss_sum
from trainables.core.optimizers import OptimizerSpec
from trainables.files import write_atomically


# TorchScript's profiling executor fuses e3nn's scripted tensor products after their first calls, in
# another float order: a process's first fine-tuning run differed from its later ones with the same
# seed (6.7e-6 in the weights after 10 steps of the smoke size), so seeds were reproducible only
# after something else had warmed the executor up. Without fusion every run of a seed gives the same
# bits, and eager steps take as long without fusion (benchmarks/HISTORY.md). The compiled step
# (torch.compile) does not use TorchScript.
torch.jit.set_fusion_strategy([("STATIC", 0), ("DYNAMIC", 0)])


def set_threads(threads: int) -> None:
    """One torch/OMP thread per CPU the run is given (oversubscribing 2 cores made steps ~13x slower)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """`auto`: the CUDA device when one is visible (Ray sets CUDA_VISIBLE_DEVICES per trial), else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def on_device(batch, device: torch.device):
    """The batch on `device`; a batch already there is returned as is (mace's `Batch.to` walks every
    attribute even then, about 2% of a CPU training step)."""
    return batch if batch.positions.device == device else batch.to(device)


def forward(model: torch.nn.Module, batch, training: bool, compute_stress: bool = False) -> dict:
    """Energies and (autograd) forces; `training` keeps the graph for a second derivative."""
    inputs = batch.to_dict()
    inputs["positions"].requires_grad_(True)  # MACE does it too, but inside a compiled graph it must come first
    return model(inputs, training=training, compute_force=True, compute_stress=compute_stress)


def set_modes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, spec: OptimizerSpec | None,
              train: bool) -> None:
    """Switch the model and, for optimizers with train/eval weight sequences, the optimizer too."""
    model.train(train)
    if optimizer is not None and spec is not None and spec.has_train_eval_modes:
        optimizer.train() if train else optimizer.eval()


@dataclass
class EpochStats:
    loss: float
    steps: int
    finite: bool


def train_epoch(model, loader: Iterable, optimizer, weights: LossWeights, device: torch.device,
                clip_grad_norm: float | None, scheduler=None, max_steps: int | None = None,
                compute_stress: bool = False, after_step: Callable[[int], None] | None = None,
                average=None) -> EpochStats:
    """One pass over `loader` (or until `max_steps`); stops at the first non-finite loss. After each
    optimizer step the `scheduler` (an `LrSchedule` or torch scheduler) steps and the weight
    `average` (trainables.core.averaging) updates; then `after_step(steps)` is called with the steps
    taken in this epoch so far."""
    total, configs, steps = 0.0, 0, 0
    for batch in loader:
        if max_steps is not None and steps >= max_steps:
            break
        batch = on_device(batch, device)
        optimizer.zero_grad(set_to_none=True)
        loss = eq1_loss(batch, forward(model, batch, training=True, compute_stress=compute_stress), weights)
        if not torch.isfinite(loss):
            return EpochStats(loss=float("nan"), steps=steps, finite=False)
        loss.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if average is not None:
            average.update()
        total += float(loss.detach()) * batch.num_graphs
        configs += batch.num_graphs
        steps += 1
        if after_step is not None:
            after_step(steps)
    mean = total / max(configs, 1)
    return EpochStats(loss=mean, steps=steps, finite=math.isfinite(mean))


def evaluate(model, loader: Iterable, device: torch.device, profile: bool = False,
             reference: SetReference | None = None, offsets: bool = False) -> dict[str, Any]:
    """Energy RMSE (meV/atom) and force RMSE (meV/A) of `model` over `loader` (NaN where the set has
    no such labels), energies in float64 against `reference` (the set's energies as read, in the
    loader's order) where given; with `profile` (paths or scans, in order) also the relative-energy
    errors, curve by curve; with `offsets`, the energy RMSE a per-element offset leaves."""
    errors = ErrorAccumulator(reference)
    for batch in loader:
        batch = on_device(batch, device)
        errors.add(batch, forward(model, batch, training=False))
    return {**errors.rmse(), **(errors.profile_errors() if profile else {}),
            **(errors.offset_removed_rmse() if offsets else {})}


def save_training_state(path: Path, model, optimizer, scheduler, loader_generator: torch.Generator | None,
                        progress: dict[str, Any], average=None) -> None:
    """Everything needed to resume bit-for-bit: weights, optimizer, schedule, weight average, shuffle
    RNG, progress."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "weight_average": None if average is None else average.state_dict(),
        "loader_rng": None if loader_generator is None else loader_generator.get_state(),
        "progress": progress,
    }
    write_atomically(path, lambda tmp: torch.save(state, tmp))


def load_training_state(path: Path, model, optimizer, scheduler, loader_generator, average=None) -> dict[str, Any]:
    """Restore what `save_training_state` wrote into the run's objects; returns the progress."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if average is not None:
        average.load_state_dict(state["weight_average"])
    if loader_generator is not None and state["loader_rng"] is not None:
        loader_generator.set_state(state["loader_rng"])
    return state["progress"]


def full_loss(model, loader: Iterable, weights: LossWeights, device: torch.device,
              compute_stress: bool = False) -> float:
    """Eq. 1 over every configuration of `loader` (a mean over configurations, no gradient kept)."""
    total, configs = 0.0, 0
    for batch in loader:
        batch = on_device(batch, device)
        total += float(loss_sum(batch, forward(model, batch, training=False, compute_stress=compute_stress), weights))
        configs += batch.num_graphs
    return total / max(configs, 1)
