"""The L-BFGS stage (Algorithm 1, trainables.core.lbfgs) against torch.optim.LBFGS on the same objective.

    OMP_NUM_THREADS=1 python benchmarks/lbfgs_vs_torch.py [--evals 40] [--epochs 3] [--size full|smoke]
    OMP_NUM_THREADS=1 python benchmarks/lbfgs_vs_torch.py --from DIR   # a `trainables.stages.finetune --out` folder

Both start from the same first-order model of the embedded default (Adam, lr 1e-3, `--epochs`
epochs, or the model in DIR) and get the same budget of `--evals` objective evaluations, one being
Eq. 1 and its gradient over the whole training set (`trainables.stages.refine.Eq1Objective`). Ours runs
with its defaults except that nothing stops it before the budget (no early stopping on
validation); torch.optim.LBFGS with lr=1, history_size=20, line_search_fn="strong_wolfe".

torch's `step()` is called once per iteration (max_iter=1) so that every iterate can be validated.
Each call starts by re-evaluating the current point, which a single `step(max_iter=N,
max_eval=budget)` would not do; that point was already evaluated by the previous line search, so
the re-evaluation is served from a cache of evaluated points (exact match), neither charged nor
recomputed, and `max_eval` is set per call so that the line search gets the evaluations left of
the budget, as in one long `step()`: torch's iterates and evaluation count are those of one call.
Validation force RMSE is measured on every iterate, outside the evaluation count and the
objective time.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for category in (UserWarning, DeprecationWarning):  # mace's TorchScript warnings would bury the table
    warnings.simplefilter("ignore", category)

from trainables.core.config import FinetuneConfig  # noqa: E402
from trainables.core.data import make_loader  # noqa: E402
from trainables.core.lbfgs import LBFGSConfig, lbfgs_refine  # noqa: E402
from trainables.core.training import evaluate, resolve_device, set_threads  # noqa: E402
from trainables.stages.finetune import run_finetune  # noqa: E402
from trainables.stages.inputs import PreparedInputs, prepare_inputs  # noqa: E402
from trainables.stages.refine import DEFAULT_CHUNK, Eq1Objective, load_start_model  # noqa: E402

OURS, TORCH = "ours", "torch"


class BudgetSpent(Exception):
    """Raised by `CountedObjective` when a new evaluation would exceed the budget."""


class CountedObjective:
    """Eq. 1 with an evaluation budget: `evals` counts distinct points; a point already evaluated
    (bitwise equal) is answered from the cache without a charge."""

    def __init__(self, objective: Eq1Objective, budget: int):
        self.objective, self.budget = objective, budget
        self.points: list[tuple[torch.Tensor, float, torch.Tensor]] = []
        self.evals, self.seconds = 0, 0.0

    def lookup(self, x: torch.Tensor) -> tuple[float, torch.Tensor] | None:
        return next(((f, g) for point, f, g in reversed(self.points) if torch.equal(point, x)), None)

    def loss_at(self, x: torch.Tensor) -> float:
        cached = self.lookup(x)
        if cached is None:
            raise LookupError("the iterate is not one of the evaluated points")
        return cached[0]

    def __call__(self, x: torch.Tensor) -> tuple[float, torch.Tensor]:
        cached = self.lookup(x)
        if cached is not None:
            return cached
        if self.evals >= self.budget:
            raise BudgetSpent
        start = time.perf_counter()
        f, g = self.objective(x)
        self.seconds += time.perf_counter() - start
        self.evals += 1
        self.points.append((x.detach().clone(), f, g.clone()))
        return f, g


class Run:
    """One optimizer's run: the counted objective, validation, and one flat row per iterate."""

    def __init__(self, name: str, model: torch.nn.Module, inputs: PreparedInputs, config: FinetuneConfig,
                 budget: int):
        self.name, self.device = name, resolve_device(config.device)
        self.model = model.to(self.device).train()
        eq1 = Eq1Objective(self.model, inputs.graphs["train"], config, DEFAULT_CHUNK, self.device, inputs.has_stress)
        self.params, self.objective = eq1.params, CountedObjective(eq1, budget)
        self.val_loader = make_loader(inputs.graphs["val"], config.eval_batch_size, shuffle=False)
        self.rows: list[dict[str, Any]] = []
        self.start = time.perf_counter()

    def x(self) -> torch.Tensor:
        return parameters_to_vector(self.params).detach().clone()

    def record(self, x: torch.Tensor) -> dict[str, float]:
        """Validate the iterate x (an evaluated point) and append its row."""
        f = self.objective.loss_at(x)
        vector_to_parameters(x.clone(), self.params)
        val = evaluate(self.model, self.val_loader, self.device)
        self.rows.append({"optimizer": self.name, "iteration": len(self.rows), "evals": self.objective.evals,
                          "loss": f, "val_force_rmse_mev_a": val["force_rmse_mev_a"],
                          "objective_s": self.objective.seconds, "wall_time_s": time.perf_counter() - self.start})
        return {"force_rmse": val["force_rmse_mev_a"]}


def run_ours(run: Run, budget: int) -> None:
    """Algorithm 1 with its defaults, max_steps and patience past the budget (no early stop)."""
    config = LBFGSConfig(max_steps=budget, patience=budget + 1)
    try:
        lbfgs_refine(run.objective, run.x(), config, validate=run.record)
    except BudgetSpent:
        pass  # the rows hold every iterate reached within the budget


def run_torch(run: Run, budget: int) -> None:
    """torch.optim.LBFGS, one iteration per step() so that each iterate is validated."""
    optimizer = torch.optim.LBFGS(run.params, lr=1, history_size=20, line_search_fn="strong_wolfe", max_iter=1)

    def closure() -> torch.Tensor:
        f, g = run.objective(parameters_to_vector(run.params).detach())
        for p, grad in zip(run.params, _split_like(g, run.params)):
            p.grad = grad
        return torch.tensor(f)

    closure()
    run.record(run.x())
    while run.objective.evals < budget:
        before = run.objective.evals
        # torch's line search may spend max_eval - 1 = budget - before evaluations, as in one long step()
        optimizer.param_groups[0]["max_eval"] = budget - before + 1
        try:
            optimizer.step(closure)
        except BudgetSpent:
            break
        if run.objective.evals == before:  # torch saw a converged point and evaluated nothing new
            break
        run.record(run.x())


def _split_like(flat: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    sizes = [p.numel() for p in params]
    return [chunk.view_as(p).clone() for chunk, p in zip(flat.split(sizes), params)]


def start_model(args, config: FinetuneConfig, inputs: PreparedInputs) -> torch.nn.Module:
    """The first-order model: loaded from --from, or Adam for --epochs epochs."""
    if args.source is not None:
        return load_start_model(config, args.source, inputs.heads)
    result = run_finetune(config, inputs, on_epoch=lambda r, _: print(
        f"  adam epoch {r['epoch']}  loss {r['loss']:.4g}  val F {r['val_force_rmse_mev_a']:.1f} meV/A  "
        f"{r['wall_time_s']:.0f} s", flush=True))
    if result.status != "ok":
        raise SystemExit(f"the first-order run {result.status}")
    return result.model


def run_config(args) -> FinetuneConfig:
    if args.source is None:
        return FinetuneConfig(data_size=args.size, optimizer="adam", lr=1e-3, epochs=args.epochs, threads=args.threads)
    saved = json.loads((args.source / "metrics.json").read_text())["config"]
    return FinetuneConfig.from_dict({**saved, "threads": args.threads})


def at_evals(rows: list[dict[str, Any]], evals: int) -> dict[str, Any]:
    """The latest iterate reached with at most `evals` evaluations."""
    return [row for row in rows if row["evals"] <= evals][-1]


def format_table(rows: dict[str, list[dict[str, Any]]], budget: int) -> str:
    """One line per evaluation count at which either optimizer reached a new iterate."""
    counts = sorted({row["evals"] for runs in rows.values() for row in runs if row["evals"] <= budget})
    header = f"{'evals':>5}" + "".join(f" | {name + ' iter':>10} {'loss':>10} {'val F':>8}" for name in rows)
    lines = [header, "-" * len(header)]
    for n in counts:
        cells = [at_evals(runs, n) for runs in rows.values()]
        lines.append(f"{n:>5}" + "".join(f" | {c['iteration']:>10} {c['loss']:>10.5g} {c['val_force_rmse_mev_a']:>8.1f}"
                                          for c in cells))
    return "\n".join(lines) + "\n(val F: validation force RMSE of the iterate, meV/A)"


def evals_per_iteration(runs: list[dict[str, Any]]) -> list[int]:
    return [b["evals"] - a["evals"] for a, b in zip(runs, runs[1:])]


def first_evals_reaching(runs: list[dict[str, Any]], loss: float) -> int | None:
    return next((row["evals"] for row in runs if row["loss"] <= loss), None)


def summary(rows: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for name, runs in rows.items():
        last, per = runs[-1], evals_per_iteration(runs)
        lines.append(f"{name:<5}: {last['iteration']} iterations in {last['evals']} evaluations "
                     f"(median {statistics.median(per) if per else float('nan'):g}, max {max(per, default=0)} "
                     f"per iteration); loss {runs[0]['loss']:.5g} -> {last['loss']:.5g}; val F "
                     f"{runs[0]['val_force_rmse_mev_a']:.1f} -> {last['val_force_rmse_mev_a']:.1f} meV/A "
                     f"(best {min(r['val_force_rmse_mev_a'] for r in runs):.1f}); wall {last['wall_time_s']:.0f} s "
                     f"(objective {last['objective_s']:.0f} s)")
    target = max(runs[-1]["loss"] for runs in rows.values())  # the decrease both reached
    ours, theirs = first_evals_reaching(rows[OURS], target), first_evals_reaching(rows[TORCH], target)
    lines.append(f"evaluations for the same decrease (to loss {target:.5g}, the higher final loss): "
                 f"ours {ours}, torch {theirs}, ratio ours/torch {ours / theirs:.2f}")
    median = statistics.median(evals_per_iteration(rows[OURS]) or [float("nan")])
    met = ours < theirs and median <= 1.3
    lines.append(f"goal (fewer evaluations than torch for the same decrease, median <= 1.3 per iteration): "
                 f"{'met' if met else 'NOT met'}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evals", type=int, default=40, help="objective evaluations per optimizer")
    parser.add_argument("--epochs", type=int, default=3, help="Adam epochs of the first-order start")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", choices=("full", "smoke"), default="full", help="embedded default's data size")
    parser.add_argument("--from", dest="source", type=Path, help="start from this first-order output folder")
    return parser


def main() -> int:
    args = _parser().parse_args()
    config = run_config(args)
    set_threads(config.threads)
    inputs = prepare_inputs(config)
    print(f"{config.system or 'embedded default'} ({config.data_size}): {len(inputs.graphs['train'])} training, "
          f"{len(inputs.graphs['val'])} validation configurations; budget {args.evals} evaluations", flush=True)
    model = start_model(args, config, inputs)
    runners: dict[str, Callable[[Run, int], None]] = {OURS: run_ours, TORCH: run_torch}
    rows = {}
    for name, runner in runners.items():
        run = Run(name, copy.deepcopy(model), inputs, config, args.evals)
        runner(run, args.evals)
        rows[name] = run.rows
        print(f"  {name}: {run.rows[-1]['iteration']} iterations, {run.objective.evals} evaluations, "
              f"{run.rows[-1]['wall_time_s']:.0f} s", flush=True)
    print()
    print(format_table(rows, args.evals))
    print()
    print(summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
