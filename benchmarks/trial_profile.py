"""Where a study trial's time goes: set-up, training steps, validation, scoring; and inside a step.

    OMP_NUM_THREADS=1 python benchmarks/trial_profile.py [--optimizer adam] [--epochs 10]

One process, one thread, the embedded default at full size and the study default (replay mode, 100
replay configurations, batch size 5, compiled step). The trial runs twice through `run_finetune`,
as in a reused Ray actor: the first run includes loading (or, with an empty compiler cache,
building) the compiled step; the second is the steady state every later trial of a study sees.
Three tables:
1. the second run's wall time by phase (timers around the functions `run_finetune` calls);
2. one training step by part (forward + loss, backward, gradient clipping, optimizer), timed over
   one epoch of the same loader;
3. the step's CPU time by kind of operation, from `torch.profiler` over 30 steps: inductor's fused
   kernels (the compiled graphs' own time), matrix products (oneDNN/BLAS, called from the graphs),
   Dynamo's guard checks, and the rest (optimizer and clipping kernels, autograd, Python).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import study_fixed  # noqa: E402

MATRIX_PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
FUSED = "inductor's fused kernels"


def timed_phases(module, names: dict[str, str], seconds: dict[str, float]) -> None:
    """Wrap `module.<function>` for each function name so that its wall time adds to seconds[phase]."""
    for function, phase in names.items():
        original = getattr(module, function)

        def wrapper(*args, _original=original, _phase=phase, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                seconds[_phase] += time.perf_counter() - start

        setattr(module, function, wrapper)


def trial_phases(config, inputs) -> tuple[float, float, dict[str, float]]:
    """(first run's wall, second run's wall, the second run's seconds by phase)."""
    from trainables.stages import finetune

    seconds: dict[str, float] = defaultdict(float)
    timed_phases(finetune, {"training_modules": "compiled step: build or reuse", "train_epoch": "training steps",
                            "evaluate": "evaluation", "score_all": "final scoring",
                            "score_before_finetuning": "final scoring"}, seconds)
    first = finetune.run_finetune(config, inputs).wall_time_s
    seconds.clear()
    second = finetune.run_finetune(config.replace(seed=config.seed + 1), inputs).wall_time_s
    phases = dict(seconds)
    # evaluate() also runs inside the scoring functions: what is left is the per-epoch validation
    phases["validation after each epoch"] = phases.pop("evaluation") - phases["final scoring"]
    phases["other (building the optimizer, loaders, schedule)"] = second - sum(phases.values())
    return first, second, phases


def step_parts(config, inputs, steps_for_profile: int = 30) -> tuple[int, dict[str, float], dict[str, float]]:
    """(steps, ms per step by part, profiler self-CPU ms per step by kind of op)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from trainables.core.data import training_loader
    from trainables.core.loss import eq1_loss
    from trainables.core.optimizers import get_optimizer_spec
    from trainables.core.training import forward
    from trainables.speed.compiled import training_modules
    from trainables.stages.finetune import loss_weights

    model, step_model = training_modules(inputs.initial_model())
    optimizer = get_optimizer_spec(config.optimizer).build(model.parameters(), lr=config.lr,
                                                           weight_decay=config.weight_decay)
    weights, batches = loss_weights(config), list(training_loader(inputs.graphs["train"], config.batch_size, seed=0))
    parts: dict[str, float] = defaultdict(float)

    def step(batch, clock: bool) -> None:
        marks = [time.perf_counter()]
        optimizer.zero_grad(set_to_none=True)
        loss = eq1_loss(batch, forward(step_model, batch, training=True), weights)
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        if clock:
            for name, begin, end in zip(("forward + loss", "backward", "gradient clipping", "optimizer step"),
                                        marks, marks[1:]):
                parts[name] += end - begin

    for batch in batches[:5]:  # the compiled step is built (or loaded) and warm
        step(batch, clock=False)
    for batch in batches:
        step(batch, clock=True)
    per_step = {name: 1000 * total / len(batches) for name, total in parts.items()}
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for batch in batches[:steps_for_profile]:
            step(batch, clock=False)
    kinds: dict[str, float] = defaultdict(float)
    for event in profiler.key_averages():
        kinds[_kind(event.key)] += event.self_cpu_time_total / 1000 / steps_for_profile
    return len(batches), per_step, dict(kinds)


def _kind(key: str) -> str:
    if "CompiledFxGraph" in key:
        return FUSED
    if key in MATRIX_PRODUCTS:
        return "matrix products (mm, addmm, bmm)"
    if key == "TorchDynamo Cache Lookup":
        return "Dynamo guard checks"
    return "everything else (optimizer, clipping, autograd, Python)"


def _table(title: str, rows: dict[str, float], unit: str) -> str:
    total = sum(rows.values())
    lines = [title, f"{'':<52} {unit:>10} {'share':>7}"]
    for name, value in sorted(rows.items(), key=lambda item: -item[1]):
        lines.append(f"{name:<52} {value:>10.2f} {value / total:>7.1%}")
    lines.append(f"{'total':<52} {total:>10.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-size", default="full")
    args = parser.parse_args()

    from trainables.core.config import FinetuneConfig
    from trainables.stages.inputs import prepare_inputs

    config = FinetuneConfig.from_dict({**study_fixed(args.epochs, args.data_size), "optimizer": args.optimizer,
                                       "lr": 1e-3, "threads": 1})
    start = time.perf_counter()
    inputs = prepare_inputs(config)
    prepare_s = time.perf_counter() - start
    first, second, phases = trial_phases(config, inputs)
    steps, per_step, kinds = step_parts(config, inputs)
    print(f"\n{args.optimizer}, lr 1e-3, {args.epochs} epochs, {args.data_size} data, replay mode, batch size "
          f"{config.batch_size}, 1 thread; inputs prepared once in {prepare_s:.1f} s (graphs, replay selection)")
    print(f"first trial in the process {first:.1f} s (loads or builds the compiled step), second {second:.1f} s\n")
    print(_table("second trial, by phase", phases, "seconds"))
    print()
    print(_table(f"one training step, mean over an epoch of {steps} steps", per_step, "ms"))
    print()
    print(_table("one training step, self CPU time by kind (torch.profiler, 30 steps)", kinds, "ms"))
    print(f"\ntraining steps / trial = {phases['training steps'] / second:.2f}; "
          f"fused kernels / step CPU time = {kinds.get(FUSED, 0.0) / sum(kinds.values()):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
