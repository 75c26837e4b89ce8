"""The first-order fine-tuning stage: build, loop, score (`run_finetune`).

Its single-run command is `python -m trainables.finetune` (trainables/finetune.py).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from trainables.core.averaging import averaged, make_average
from trainables.core.config import FinetuneConfig
from trainables.core.curvature import OptimizerRecord, first_order_record
from trainables.core.data import even_batch_size, make_loader, training_loader
from trainables.core.environment import run_environment
from trainables.core.foundation import save_model
from trainables.core.loss import LossWeights
from trainables.core.optimizers import get_optimizer_spec
from trainables.core.partial_training import (
    adapt_model,
    exported_model,
    optimizer_groups,
    trainable_parameters,
    training_state_megabytes,
)
from trainables.core.replay import export_task_head
from trainables.core.training import (
    evaluate,
    load_training_state,
    resolve_device,
    save_training_state,
    seed_everything,
    set_modes,
    set_threads,
    train_epoch,
)
from trainables.core.schedules import make_schedule, validation_loss, warmup_hyper
from trainables.files import write_text_atomically
from trainables.speed.background_compile import EagerUntilCompiled
from trainables.speed.compiled import ScoringThroughStep, compile_seconds, training_modules
from trainables.stages.inputs import PreparedInputs, inputs_for_mode, prepare_inputs

MODEL_FILE = "model.pt"
MULTIHEAD_MODEL_FILE = "model_multihead.pt"
STATE_FILE = "training_state.pt"

# on_epoch(record, write_checkpoint): write_checkpoint(folder) saves model + training state there
# (None for a validation within an epoch, `val_every_steps`: there is no resumable state there)
EpochCallback = Callable[[dict[str, Any], Callable[[Path], None] | None], None]


@dataclass
class FinetuneResult:
    """The outcome of one run. `scores` maps a test set to its RMSEs: the validation set as "val",
    every named test set, "val_before" (the initial model on the validation set: the foundation's
    zero-shot score), and with a replay set "replay" (after fine-tuning) and "replay_before"
    (the initial model on the same set; in replay mode the replay head, which equals the
    foundation). Forgetting is "replay" minus "replay_before"; both are ordinary test-set rows."""

    status: str                     # "ok" or "diverged"
    records: list[dict[str, Any]]   # one per epoch (and per `val_every_steps` within epochs)
    scores: dict[str, dict[str, float]]  # test set -> RMSEs (the validation set as "val")
    steps: int
    wall_time_s: float
    model: torch.nn.Module = field(repr=False)
    resumed_from_step: int = 0      # the step of the checkpoint this run started from (0: from the start)
    compile_time_s: float = 0.0     # of wall_time_s, compiling (or loading compiled graphs); the rest is training
    environment: dict[str, Any] = field(default_factory=dict)  # trainables.core.environment.run_environment
    cost: dict[str, Any] = field(default_factory=dict)  # `run_cost`: trainable parameters, memory, step time
    optimizer_record: OptimizerRecord | None = field(default=None, repr=False)  # the state at the final weights


def loss_weights(config: FinetuneConfig) -> LossWeights:
    return LossWeights(config.energy_weight, config.forces_weight, config.stress_weight, config.per_atom_energy)


def scoring_modules(initial: torch.nn.Module, config: FinetuneConfig,
                    compute_stress: bool) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """(model, step model, scoring model), all sharing `initial`'s weights: with `compile`, the eager
    model the optimizer updates, its compiled training step and scoring through that step; else
    `initial` three times."""
    if not config.compile:
        return initial, initial, initial
    model, step_model = training_modules(initial)
    if config.compile_aside:
        step_model = EagerUntilCompiled(model, step_model)
    return model, step_model, ScoringThroughStep(step_model, model, compute_stress)


def close_side_compile(step_model: torch.nn.Module) -> None:
    """End a `compile_aside` run's second process if the run ended before it finished."""
    if isinstance(step_model, EagerUntilCompiled):
        step_model.close()


def scoring_loader(graphs, config: FinetuneConfig):
    """Batches in order for scoring. With `compile` they go through the compiled step, so they are
    batches of at most the training batch size (the shapes it was compiled for) split evenly: never
    a lone graph unless the set has one. Eagerly, batches of `eval_batch_size`."""
    if not config.compile:
        return make_loader(graphs, config.eval_batch_size, shuffle=False)
    return make_loader(graphs, even_batch_size(len(graphs), min(config.batch_size, config.eval_batch_size)),
                       shuffle=False)


def score_set(model, inputs: PreparedInputs, name: str, config: FinetuneConfig, device,
              offsets: bool = False) -> dict[str, Any]:
    """Errors on one set, energies against its float64 reference (paths and scans: relative energies
    too; with `offsets`, what a per-element energy offset leaves)."""
    return evaluate(model, scoring_loader(inputs.graphs[name], config), device,
                    profile=name in inputs.sources.profile_tests, reference=inputs.references.get(name),
                    offsets=offsets)


def score_all(model, inputs: PreparedInputs, config: FinetuneConfig, device) -> dict[str, dict[str, Any]]:
    """Errors on the validation set and every named test set."""
    return {name: score_set(model, inputs, name, config, device) for name in ["val", *inputs.test_names]}


def score_before_finetuning(model, inputs: PreparedInputs, config: FinetuneConfig,
                            device) -> dict[str, dict[str, float]]:
    """The not yet fine-tuned model's errors: "val_before" on the validation set (the foundation's
    zero-shot score, with the run's E0s, and the part of its energy error a per-element offset does
    not explain) and, with a replay set, "replay_before" on it. Every run on
    `inputs` starts from the same model: a process (a reused Ray actor) scores it once."""
    key = (str(device), config.compile, config.batch_size, config.eval_batch_size)
    if key not in inputs.initial_scores:
        sets = {"val_before": "val", **({"replay_before": "replay"} if "replay" in inputs.graphs else {})}
        inputs.initial_scores[key] = {
            before: score_set(model, inputs, name, config, device, offsets=before == "val_before")
            for before, name in sets.items()}
    return {name: dict(rmses) for name, rmses in inputs.initial_scores[key].items()}


def _finite(metrics: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in metrics.values())


class RunClock:
    """A run's wall, compile and validation seconds, kept in `progress` (so a resumed run goes on
    from its checkpoint's), and its curve points."""

    def __init__(self, progress: dict[str, Any], start: float, compiled_before: float):
        self.progress, self.start, self.elapsed_before = progress, start, progress["elapsed_s"]
        self.compile_offset = progress["compile_s"] - compiled_before  # earlier attempts, less this process's count

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start

    def compile_time(self) -> float:
        return self.compile_offset + compile_seconds()

    def timed_steps(self, run_steps: Callable[[], Any]) -> Any:
        """`run_steps()`, its seconds less validating and compiling added to `progress["step_s"]`."""
        began, validated, compiled = time.perf_counter(), self.progress["validation_s"], compile_seconds()
        outcome = run_steps()
        spent = time.perf_counter() - began - (self.progress["validation_s"] - validated)
        self.progress["step_s"] += spent - (compile_seconds() - compiled)
        return outcome

    def timed_validation(self, validate: Callable[[], dict[str, float]]) -> dict[str, float]:
        began = time.perf_counter()
        val = validate()
        self.progress["validation_s"] += time.perf_counter() - began
        return val

    def record(self, val: dict[str, float], epoch: float, steps: int, loss: float) -> dict[str, Any]:
        """A curve point, appended to `progress`; `train_time_s` is the wall time less compiling and validating."""
        progress = self.progress
        progress["elapsed_s"], progress["compile_s"] = self.elapsed(), self.compile_time()
        record = {"epoch": epoch, "steps": steps, "loss": loss, **{f"val_{k}": v for k, v in val.items()},
                  "wall_time_s": progress["elapsed_s"], "compile_time_s": progress["compile_s"],
                  "train_time_s": progress["elapsed_s"] - progress["compile_s"] - progress["validation_s"]}
        progress["records"].append(record)
        return record


def start_progress(resume_from: Path | None, model, optimizer, scheduler, generator, average=None) -> dict[str, Any]:
    """A new run's progress, or a checkpoint's (its model, optimizer, schedule, weight average and
    shuffle restored)."""
    progress = {"epoch": 0, "steps": 0, "records": [], "elapsed_s": 0.0, "compile_s": 0.0, "validation_s": 0.0,
                "step_s": 0.0}
    if resume_from is None:
        return progress
    return {**progress, **load_training_state(Path(resume_from) / STATE_FILE, model, optimizer, scheduler, generator,
                                              average)}


def write_checkpoint_to(folder: Path, model, optimizer, spec, scheduler, generator, progress: dict[str, Any],
                        average=None, export: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m) -> None:
    """A run's checkpoint into `folder`, as `on_epoch` callbacks write it: the model file holds the
    weights the run scores (with an EMA, the average) as a plain MACE model (`export`: LoRA merged),
    the training state the weights it trains on."""
    set_modes(model, optimizer, spec, train=False)  # ScheduleFree: save the averaged weights
    save_training_state(Path(folder) / STATE_FILE, model, optimizer, scheduler, generator, progress, average)
    with averaged(average):
        save_model(export(model), Path(folder) / MODEL_FILE)


@contextmanager
def scored_weights(model, optimizer, spec, average) -> Iterator[None]:
    """The weights a run validates and scores in the model for the block: the optimizer's eval weights
    (ScheduleFree's average), or the EMA of those where the run keeps one."""
    set_modes(model, optimizer, spec, train=False)
    with averaged(average):
        yield


def end_on_scored_weights(model, optimizer, spec, average) -> None:
    """Leave the model holding its scored weights for good (with an EMA, the average, as mace does)."""
    set_modes(model, optimizer, spec, train=False)
    if average is not None:
        average.copy_to_model()


def training_protocol(model, config: FinetuneConfig, spec, total_steps: int):
    """(optimizer, lr schedule, weight average or None) of a run (trainables.core.schedules,
    trainables.core.averaging) on the parameter groups of its method (trainables.core.methods); the
    optimizer takes the warm-up itself where its spec says so."""
    groups = optimizer_groups(model, config.method_spec, config.method_options, config.lr)
    optimizer = spec.build(groups, lr=config.lr, weight_decay=config.weight_decay, **config.hyper,
                           **warmup_hyper(spec, config.warmup_steps))
    return (optimizer, make_schedule(optimizer, config, total_steps, spec),
            make_average(model, optimizer, spec, config.ema_decay))


def seed_and_threads(config: FinetuneConfig) -> None:
    """The process's thread count and every random generator's seed, as the run is configured."""
    set_threads(config.threads)
    seed_everything(config.seed)


def run_finetune(config: FinetuneConfig, inputs: PreparedInputs | None = None, resume_from: Path | None = None,
                 on_epoch: EpochCallback | None = None) -> FinetuneResult:
    """Fine-tune for the configured budget; a non-finite loss ends the run as `diverged`."""
    start, compiled_before = time.perf_counter(), compile_seconds()
    seed_and_threads(config)
    inputs = inputs_for_mode(inputs or prepare_inputs(config), config.mode)
    device, spec, method = resolve_device(config.device), get_optimizer_spec(config.optimizer), config.method_spec
    reset_peak_memory(device)
    initial = adapt_model(inputs.initial_model(), method, config.method_options, config.seed).to(device)
    model, step_model, scoring_model = scoring_modules(initial, config, inputs.has_stress)  # shared parameters
    before = score_before_finetuning(scoring_model, inputs, config, device)
    loader, val_loader, total_steps = run_loaders(inputs, config)
    optimizer, scheduler, average = training_protocol(model, config, spec, total_steps)
    progress = start_progress(resume_from, model, optimizer, scheduler, loader.generator, average)
    steps_before, status, weights = progress["steps"], "ok", loss_weights(config)
    clock = RunClock(progress, start, compiled_before)

    def validate() -> dict[str, float]:
        with scored_weights(model, optimizer, spec, average):
            return clock.timed_validation(lambda: evaluate(scoring_model, val_loader, device))

    def validate_within_epoch(steps_in_epoch: int) -> None:
        fraction = within_epoch_point(progress["steps"], steps_in_epoch, config.val_every_steps, len(loader),
                                      total_steps)
        if fraction is None:
            return
        val = validate()
        set_modes(model, optimizer, spec, train=True)
        if _finite(val):
            record = clock.record(val, progress["epoch"] + fraction, progress["steps"] + steps_in_epoch, math.nan)
            if on_epoch is not None:
                on_epoch(record, None)  # no checkpoint within an epoch

    write_checkpoint = partial(write_checkpoint_to, model=model, optimizer=optimizer, spec=spec, scheduler=scheduler,
                               generator=loader.generator, progress=progress, average=average,
                               export=partial(exported_model, method=method))
    while progress["epoch"] < config.epochs and progress["steps"] < total_steps:
        set_modes(model, optimizer, spec, train=True)
        stats = clock.timed_steps(partial(
            train_epoch, step_model, loader, optimizer, weights, device, config.clip_grad_norm, scheduler,
            max_steps=total_steps - progress["steps"], compute_stress=inputs.has_stress,
            after_step=validate_within_epoch, average=average))
        val = validate() if stats.finite else {}
        progress["epoch"] += 1
        progress["steps"] += stats.steps
        if not (stats.finite and _finite(val)):
            status, progress["elapsed_s"] = "diverged", clock.elapsed()
            break
        record = epoch_record(clock, scheduler, val, progress, stats.loss, weights)
        if on_epoch is not None:
            on_epoch(record, write_checkpoint)
    end_on_scored_weights(model, optimizer, spec, average if status == "ok" else None)
    scores = {**score_all(scoring_model, inputs, config, device), **before} if status == "ok" else {}
    close_side_compile(step_model)
    initial.load_state_dict(model.state_dict())  # the run's own model: the compiled pair is reused by the next run
    return FinetuneResult(status=status, records=progress["records"], scores=scores, steps=progress["steps"],
                          wall_time_s=clock.elapsed(), model=exported_model(initial, method),
                          resumed_from_step=steps_before, compile_time_s=clock.compile_time(),
                          environment=run_environment(device), cost=run_cost(model, optimizer, progress, device),
                          optimizer_record=first_order_record(model, optimizer, config.optimizer, config.to_dict()))


def run_loaders(inputs: PreparedInputs, config: FinetuneConfig):
    """(shuffled training batches, validation batches, the run's optimizer steps)."""
    loader = training_loader(inputs.graphs["train"], config.batch_size, seed=config.seed)
    return loader, scoring_loader(inputs.graphs["val"], config), config.max_steps or config.epochs * len(loader)


def within_epoch_point(steps_before_epoch: int, steps_in_epoch: int, every: int | None, epoch_length: int,
                       total_steps: int) -> float | None:
    """The fraction of the epoch done when a validation within it is due (`val_every_steps`), else
    None; the epoch's last step never counts, since the epoch's end is validated anyway."""
    steps_this_epoch = min(epoch_length, total_steps - steps_before_epoch)
    if every is None or (steps_before_epoch + steps_in_epoch) % every or steps_in_epoch >= steps_this_epoch:
        return None
    return steps_in_epoch / steps_this_epoch


def epoch_record(clock: RunClock, scheduler, val: dict[str, float], progress: dict[str, Any], loss: float,
                 weights: LossWeights) -> dict[str, Any]:
    """An epoch's curve point, after the schedule has seen its validation loss (the plateau rule)."""
    scheduler.observe_validation(validation_loss(val, weights))
    record = clock.record(val, progress["epoch"], progress["steps"], loss)
    record["scheduled_lr"] = scheduler.lr()  # the next step's (an optimizer's own warm-up not included)
    return record


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def run_cost(model, optimizer, progress: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """What the run's method costs: `trainable_params` (scalars trained), `training_state_mb` (MiB of
    parameters, gradients and optimizer state), `peak_memory_mb` (the GPU's peak allocation over the
    run; NaN on a CPU, where torch keeps no such count) and `step_time_ms` (mean wall time of an
    optimizer step, without validation or compiling, over the run's attempts)."""
    steps = progress["steps"]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else math.nan
    return {"trainable_params": trainable_parameters(model),
            "training_state_mb": training_state_megabytes(model, optimizer), "peak_memory_mb": peak,
            "step_time_ms": 1e3 * progress["step_s"] / steps if steps else math.nan}


def write_run_folder(out: Path, model: torch.nn.Module, metrics: dict[str, Any]) -> None:
    """A single run's `--out` folder (the finetune and refine commands): the task head as a
    single-head model (MODEL_FILE), the whole multi-head model in replay mode, and metrics.json."""
    out.mkdir(parents=True, exist_ok=True)
    save_model(export_task_head(model), out / MODEL_FILE)
    if len(model.heads) > 1:
        save_model(model, out / MULTIHEAD_MODEL_FILE)
    write_text_atomically(out / "metrics.json", json.dumps(metrics, indent=2, default=str))
