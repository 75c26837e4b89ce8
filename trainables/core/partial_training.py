"""Which weights a run trains, through mace's own code: freezing and per-block lr factors
(`mace.tools.scripts_utils.get_params_options`, mace_run_train's `--freeze` and
`--lr_params_factors`) and LoRA (`mace.modules.lora`). The registry that names them is
trainables.core.methods; `adapt_model`, `optimizer_groups` and `exported_model` apply a run's method.
"""

from __future__ import annotations

import copy
import json
import logging
from types import SimpleNamespace
from typing import Any, Iterable

import torch
from mace.modules.lora import inject_lora, merge_lora_weights
from mace.tools.scripts_utils import get_params_options

from trainables.core.methods import Method


def _mace_groups(model: torch.nn.Module, lr: float, freeze: int | None, factors: dict[str, float]) -> list[dict]:
    """mace's optimizer groups of `model` (`get_params_options`), which also freezes what `freeze`
    names (its `--freeze` levels). A group without an lr of its own (mace's joint embedding and
    embedding readout, where a model has them) takes `lr`, as in mace's optimizer. mace logs each
    frozen block at INFO; the run's method says it."""
    args = SimpleNamespace(lr=lr, freeze=freeze, lr_params_factors=json.dumps(factors), weight_decay=0.0,
                           amsgrad=False, beta=0.9)
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        return [{"lr": lr, **group} for group in get_params_options(args, model)["params"]]
    finally:
        logging.disable(previous)


def _train_only(model: torch.nn.Module, groups: Iterable[dict]) -> None:
    """Freeze every parameter outside the groups with a positive lr: the blocks mace freezes or
    gives a factor 0, and those no group holds (the radial Bessel weights), which mace never trains."""
    trained = {id(p) for group in groups if group["lr"] > 0 for p in group["params"]}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in trained)


def outside_blocks_frozen(model: torch.nn.Module, **factors: float) -> None:
    """`block_lr`'s model: the blocks at factor 0 and the parameters outside mace's groups frozen."""
    _train_only(model, _mace_groups(model, 1.0, None, factors))


def freeze_blocks(model: torch.nn.Module, layers: int) -> None:
    """mace's `--freeze layers` on `model`, and the parameters outside mace's groups frozen."""
    _train_only(model, _mace_groups(model, 1.0, layers, {}))


def block_groups(model: torch.nn.Module, lr: float, layers: int | None = None, **factors: float) -> list[dict]:
    """The optimizer's parameter groups: mace's blocks (embedding, interactions, products, readouts)
    at lr times their factor, without frozen parameters or empty groups. Weight decay is the
    optimizer's own on every group (mace's groups exempt some blocks; here the optimizer axis
    decides it for every method alike)."""
    groups = []
    for group in _mace_groups(model, lr, layers, factors):
        params = [p for p in group["params"] if p.requires_grad]
        if params and group["lr"] > 0:
            groups.append({"params": params, "lr": group["lr"], "name": group["name"]})
    return groups


def inject_lora_layers(model: torch.nn.Module, rank: int, alpha: float) -> None:
    """mace's `inject_lora` (equivariant, dense and e3nn fully connected layers); only the LoRA
    factors stay trainable. The factors A start at N(0, 1e-3) from torch's generator, B at 0."""
    inject_lora(model, rank=rank, alpha=alpha, wrap_equivariant=True, wrap_dense=True)


def merged_lora(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with every LoRA update merged into its base layer (mace's
    `merge_lora_weights`): a plain MACE model, `model` left as it is."""
    return merge_lora_weights(copy.deepcopy(model), inplace=True).eval()


def adapt_model(model: torch.nn.Module, method: Method, settings: dict[str, Any], seed: int) -> torch.nn.Module:
    """`model` made ready for the method's training (in place): parameters frozen, LoRA injected.
    Random initial values (LoRA's A) are drawn from a generator seeded with `seed`, the global one
    left as it was: the same seed gives the same start whatever the process drew before."""
    adapt = method.weights.resolve("adapt")
    if adapt is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            adapt(model, **settings)
    return model


def optimizer_groups(model: torch.nn.Module, method: Method, settings: dict[str, Any], lr: float) -> list:
    """What the optimizer is built on: the method's groups, else every trainable parameter at `lr`."""
    groups = method.weights.resolve("param_groups")
    if groups is None:
        return [p for p in model.parameters() if p.requires_grad]
    return groups(model, lr, **settings)


def exported_model(model: torch.nn.Module, method: Method) -> torch.nn.Module:
    """The trained model as a plain MACE model (LoRA merged); `model` itself where nothing is to merge."""
    export = method.weights.resolve("export")
    return model if export is None else export(model)


def trainable_parameters(model: torch.nn.Module) -> int:
    """How many scalar parameters the run trains (those with `requires_grad`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def training_state_megabytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> float:
    """MiB of the model's parameters, the trained ones' gradients and the optimizer's state: the
    memory a method changes, on any device (activations not counted)."""
    tensors = [*model.parameters(), *(p for p in model.parameters() if p.requires_grad)]
    tensors += [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20
