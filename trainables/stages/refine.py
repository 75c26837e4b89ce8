"""The L-BFGS refinement stage on a MACE model: Algorithm 1 (trainables.core.lbfgs) applied to Eq. 1 over
the whole training set, started from a first-order run's saved model.

The objective is computed in deterministic chunks of at most `chunk_size` configurations, of
near-equal sizes (gradients accumulated), so memory stays bounded and every evaluation sees the
same sum. With `compile` (the default) the chunks go through the same compiled step as the
first-order run's batches (trainables.speed.compiled; a reused Ray actor has it already), which
makes an L-BFGS step of the embedded default about 1.7x as fast as eager. On a CPU the chunks are
kept within 4096 edges (`chunk_configurations`), the variant of the step that batches of a few
configurations run: a longer chunk is a variant of its own (inductor sums long reductions in
blocks), which a new L-BFGS trial would compile for about a minute, while shorter chunks cost no
measurable time per step (benchmarks/HISTORY.md). The validation after each step and the final
scores go through the compiled step as well (`trainables.stages.finetune.scoring_modules`). The
validation force RMSE picks the returned checkpoint, the starting point included, so the stage
never ends worse than it began on validation.

Its single-run command is `python -m trainables.refine` (trainables/refine.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from trainables.core.config import DEFAULT_CHUNK, FinetuneConfig, split_options
from trainables.core.curvature import OptimizerRecord, lbfgs_record
from trainables.core.data import even_batch_size, make_loader
from trainables.core.environment import run_environment
from trainables.core.foundation import load_foundation
from trainables.core.lbfgs import LBFGSConfig, lbfgs_refine
from trainables.core.loss import loss_sum
from trainables.core.replay import TASK_HEAD
from trainables.core.training import evaluate, forward, on_device, resolve_device, set_threads
from trainables.errors import ConfigError
from trainables.speed.compiled import LONG_REDUCTION_EDGES, compile_seconds
from trainables.stages.finetune import (
    MODEL_FILE,
    MULTIHEAD_MODEL_FILE,
    loss_weights,
    score_all,
    scoring_loader,
    scoring_modules,
)
from trainables.stages.inputs import PreparedInputs, prepare_inputs


@dataclass
class RefineResult:
    status: str                       # "ok" (the stage always returns its best checkpoint)
    stop_reason: str
    best_step: int
    records: list[dict[str, Any]]     # one per L-BFGS step, step 0 the starting point
    scores: dict[str, dict[str, float]]
    steps: int
    fevals: int
    wall_time_s: float
    model: torch.nn.Module = field(repr=False)
    resumed_from_step: int = 0        # always 0: a stage is short and restarts from its parent's model
    compile_time_s: float = 0.0       # of wall_time_s, compiling (or loading compiled graphs)
    environment: dict[str, Any] = field(default_factory=dict)  # trainables.core.environment.run_environment
    optimizer_record: OptimizerRecord | None = field(default=None, repr=False)  # the stage's last pairs


def chunk_configurations(graphs, chunk_size: int, max_edges: int | None = None) -> int:
    """Configurations per chunk: the fewest near-equal chunks (in order) of at most `chunk_size`, and
    with `max_edges` of at most that many edges each, unless a configuration alone has more."""
    edges = [int(graph.edge_index.shape[-1]) for graph in graphs]
    for size in range(chunk_size, 0, -1):
        per_chunk = even_batch_size(len(edges), size)
        if max_edges is None or max(sum(edges[i:i + per_chunk]) for i in range(0, len(edges), per_chunk)) <= max_edges:
            return per_chunk
    return even_batch_size(len(edges), chunk_size)


class Eq1Objective:
    """x -> (Eq. 1 over the training set, its gradient) for a model's flat parameter vector x.
    `step_model` computes the chunks: `model` itself, or a compiled view sharing its parameters."""

    def __init__(self, model, graphs, config: FinetuneConfig, chunk_size: int, device, compute_stress: bool,
                 step_model: torch.nn.Module | None = None):
        self.model, self.device, self.stress = model, device, compute_stress
        self.step_model = model if step_model is None else step_model
        # On a CPU, chunks of the compiled step's variant that the first-order batches ran (see the top).
        max_edges = LONG_REDUCTION_EDGES if config.compile and device.type == "cpu" else None
        self.loader = make_loader(graphs, chunk_configurations(graphs, chunk_size, max_edges), shuffle=False)
        self.count = len(graphs)
        self.weights = loss_weights(config)
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(self, x: torch.Tensor) -> tuple[float, torch.Tensor]:
        vector_to_parameters(x, self.params)
        for p in self.params:
            p.grad = None
        total = 0.0
        for batch in self.loader:
            batch = on_device(batch, self.device)
            chunk = loss_sum(batch, forward(self.step_model, batch, training=True, compute_stress=self.stress),
                             self.weights) / self.count
            chunk.backward()
            total += float(chunk.detach())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        return total, parameters_to_vector(grads).detach()


def run_refinement(config: FinetuneConfig, start_model: torch.nn.Module, inputs: PreparedInputs,
                   lbfgs: LBFGSConfig = LBFGSConfig(), chunk_size: int = DEFAULT_CHUNK) -> RefineResult:
    """Refine `start_model` (a first-order run's result, eval-mode weights) with Algorithm 1."""
    start, compiled_before = time.perf_counter(), compile_seconds()
    set_threads(config.threads)
    device = resolve_device(config.device)
    initial = start_model.to(device)
    model, step_model, scoring_model = scoring_modules(initial, config, inputs.has_stress)  # shared parameters
    model.train()
    objective = Eq1Objective(model, inputs.graphs["train"], config, chunk_size, device, inputs.has_stress,
                             step_model=step_model)
    val_loader = scoring_loader(inputs.graphs["val"], config)

    def validate(x: torch.Tensor) -> dict[str, float]:
        vector_to_parameters(x, objective.params)
        metrics = evaluate(scoring_model, val_loader, device)
        return {"energy_rmse": metrics["energy_rmse_mev_atom"], "force_rmse": metrics["force_rmse_mev_a"]}

    result = lbfgs_refine(objective, parameters_to_vector(objective.params).detach(), lbfgs, validate)
    vector_to_parameters(result.x_best, objective.params)
    model.eval()
    scores = score_all(scoring_model, inputs, config, device)
    initial.load_state_dict(model.state_dict())  # the stage's own model: the compiled pair is reused by the next run
    return RefineResult(
        status="ok", stop_reason=result.stop_reason, best_step=result.best_step,
        records=[_flat_record(r) for r in result.records], scores=scores,
        steps=len(result.records) - 1, fevals=result.total_fevals,
        wall_time_s=time.perf_counter() - start, model=initial.eval(),
        compile_time_s=compile_seconds() - compiled_before, environment=run_environment(device),
        optimizer_record=lbfgs_record(model, objective.params, result.pairs, config.to_dict()),
    )


def _flat_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A step record with validation metrics under the same names as the first-order curves."""
    flat = {k: v for k, v in record.items() if k != "val"}
    flat["val_energy_rmse_mev_atom"] = record["val"].get("energy_rmse", float("nan"))
    flat["val_force_rmse_mev_a"] = record["val"].get("force_rmse", float("nan"))
    return flat


def load_start_model(config: FinetuneConfig, checkpoint: Path, heads: tuple[str, ...]) -> torch.nn.Module:
    """The model with all of the run's `heads` from a first-order checkpoint folder.

    A Ray checkpoint holds the whole model as model.pt; the finetune CLI's `--out` writes the task
    head alone as model.pt and, in replay mode, the two-head model as model_multihead.pt, which
    the replay term of the objective needs.
    """
    folder = Path(checkpoint)
    multihead = folder / MULTIHEAD_MODEL_FILE
    path = multihead if multihead.is_file() else folder / MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"{folder} holds no {MODEL_FILE}: not the output folder of a first-order run")
    model = load_foundation(path).to(getattr(torch, config.dtype))
    found = tuple(getattr(model, "heads", (TASK_HEAD,)))
    if found != tuple(heads):
        raise ConfigError(f"{path} has the heads {list(found)}, but a mode={config.mode!r} run needs {list(heads)}")
    return model


def refine_checkpoint(config: FinetuneConfig, checkpoint: Path, inputs: PreparedInputs | None = None,
                      options: Mapping[str, Any] | None = None) -> RefineResult:
    """Refine the model saved in a first-order checkpoint folder."""
    inputs = inputs or prepare_inputs(config)
    model = load_start_model(config, checkpoint, inputs.heads)
    lbfgs, chunk = split_options(options or {})
    return run_refinement(config, model, inputs, lbfgs, chunk)
