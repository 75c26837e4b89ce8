"""A trial's point in a study's search space, and the one format Ray Tune's trial configs carry it in.

A first-order trial's config is flat: the study's FinetuneConfig fields under `finetune`, the
space's protocol overlays under `protocols`, and the point beside them: `optimizer`, `lr` (an
Optuna trial's `lr_<optimizer>`), `seed`, and `method` and `protocol` where the space has those
axes. A grid builds them with Tune's `grid_search` (`first_order_param_space`), Optuna draws them
(`PerOptimizerLrSpace`). A later stage (L-BFGS, evaluate) runs one trial per earlier trial: its
grid holds whole configs under `point` (`later_stage_space`), each an earlier trial's config with
the stage's own entries added. `TrialPoint.of` and `stage_config` read any stage's config back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ray import tune

from search_spaces import SearchSpace
from trainables.core.config import FinetuneConfig

POINT = "point"  # a later stage's grid: whole trial configs under this key


def later_stage_space(configs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A later stage's param space: one trial per config; None when there is none."""
    return {POINT: tune.grid_search(configs)} if configs else None


def stage_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's own config, whichever stage runs it."""
    return config.get(POINT, config)


def optuna_lr_key(optimizer: str) -> str:
    """Where an Optuna trial keeps its lr: each optimizer's lr is a parameter of its own range."""
    return f"lr_{optimizer}"


@dataclass(frozen=True)
class TrialPoint:
    """What sets a trial apart from the study's others: its optimizer, lr (the optimizer's step
    size, as the space gives it), seed, and its method and protocol where the space has those axes;
    `parent_trial_id` is the first-order trial an L-BFGS trial refines (None elsewhere)."""

    optimizer: str
    lr: float
    seed: int
    method: str | None = None
    protocol: str | None = None
    parent_trial_id: str | None = None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> TrialPoint:
        """The point of a trial's config, of any stage."""
        own = stage_config(config)
        optimizer = own["optimizer"]
        return cls(optimizer=optimizer, lr=own.get("lr", own.get(optuna_lr_key(optimizer))), seed=own["seed"],
                   method=own.get("method"), protocol=own.get("protocol"), parent_trial_id=own.get("parent_trial_id"))

    def label(self) -> str:
        """'adam lr 0.001 seed 0', and the protocol where there is one."""
        protocol = f" {self.protocol}" if self.protocol is not None else ""
        return f"{self.optimizer} lr {float(self.lr):g} seed {self.seed}{protocol}"

    def axes(self) -> dict[str, Any]:
        """The method and protocol, for a row, where the space has those axes."""
        return {name: value for name, value in (("protocol", self.protocol), ("method", self.method))
                if value is not None}

    def finetune_fields(self) -> dict[str, Any]:
        """The FinetuneConfig fields the point sets."""
        method = {"method": self.method} if self.method is not None else {}
        return {**method, "optimizer": self.optimizer, "lr": self.lr, "seed": self.seed}


def run_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """The FinetuneConfig fields a trial runs: the study's, its protocol's overlay (a space's
    `[protocols.NAME]`), then its point (a method replaces the study's `mode`, which follows it)."""
    own, point = stage_config(config), TrialPoint.of(config)
    protocol = own.get("protocols", {}).get(point.protocol, {})
    study = {k: v for k, v in own["finetune"].items() if not (point.method is not None and k == "mode")}
    return {**study, **protocol, **point.finetune_fields()}


def first_order_param_space(space: SearchSpace, base: FinetuneConfig) -> dict[str, Any]:
    """`base` is the study's config, the space's fixed values already under the run's flags and file
    (`study.launch.study_config`): the trials get it as it is, each protocol's overlay on top (checked
    here, before any trial starts: `run_values` merges it), and each method of a `methods` axis
    (checked the same way; its name is each row's `method`)."""
    fixed = base.to_dict()
    if space.search != "grid":
        return {"finetune": fixed}
    lr = tune.sample_from(LrOfOptimizer(space.lr_by_optimizer)) if space.lr_by_optimizer else \
        tune.grid_search(list(space.lrs)) if space.lrs else None
    axes = {"finetune": fixed, "optimizer": tune.grid_search(list(space.optimizers)), "lr": lr,
            "seed": tune.grid_search(list(space.seeds))}
    for method in space.methods:
        base.replace(method=method)
    if space.lrs_by_method:  # one axis of (method, lr) pairs, each named apart for the trial
        pairs = [{"method": m, "lr": lr} for m, lrs in space.lrs_by_method.items() for lr in lrs]
        axes.update(method_lr=tune.grid_search(pairs), method=tune.sample_from(OfMethodLr("method")),
                    lr=tune.sample_from(OfMethodLr("lr")))
    elif space.methods:
        axes["method"] = tune.grid_search(list(space.methods))
    if not space.protocols:
        return axes
    for overlay in space.protocols.values():
        base.replace(**overlay)
    return {**axes, "protocols": space.protocols, "protocol": tune.grid_search(list(space.protocols))}


class LrOfOptimizer:
    """A grid trial's lr where each optimizer has its own (`lr_by_optimizer`), for `tune.sample_from`
    (a class, not a closure: Tune pickles the search space with the experiment state)."""

    def __init__(self, lr_by_optimizer: dict[str, float]):
        self.lr_by_optimizer = dict(lr_by_optimizer)

    def __call__(self, config: dict[str, Any]) -> float:
        return self.lr_by_optimizer[config["optimizer"]]


class OfMethodLr:
    """A grid trial's method or lr where each method has its own lrs (`lrs_by_method`): one field
    of its (method, lr) pair, for `tune.sample_from` (a class: Tune pickles the search space)."""

    def __init__(self, key: str):
        self.key = key

    def __call__(self, config: dict[str, Any]) -> Any:
        return config["method_lr"][self.key]


class PerOptimizerLrSpace:
    """Optuna's define-by-run space: an optimizer, then a log-uniform lr in that optimizer's range.
    (A class, not a closure: Tune pickles the searcher with the experiment state.)"""

    def __init__(self, lr_ranges: dict[str, tuple[float, float]], seeds: list[int]):
        self.lr_ranges, self.seeds = lr_ranges, seeds

    def __call__(self, trial) -> None:
        optimizer = trial.suggest_categorical("optimizer", list(self.lr_ranges))
        low, high = self.lr_ranges[optimizer]
        trial.suggest_float(optuna_lr_key(optimizer), low, high, log=True)
        trial.suggest_categorical("seed", list(self.seeds))
