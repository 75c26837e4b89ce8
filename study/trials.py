"""Ray Tune trainables: thin wrappers that build a run from the fine-tuning core, report, and resume.

Each trainable is one function of Ray's `config`, in the format of `study.points`: the study's
FinetuneConfig fields and the trial's point (`TrialPoint`), which `trial_config` turns into the
FinetuneConfig the trial runs; the L-BFGS stage's trials add `parent_checkpoint` (the first-order
trial's final checkpoint) and `lbfgs` (the stage's options), the evaluate stage's
`model_checkpoint` (a first-order or L-BFGS trial's final checkpoint), `model_trial_id`,
`model_stage` and `properties` (PropertySettings fields).
Every report carries `kind`: "epoch" / "step" for curves, "final" for the scores (JSON in
`scores_json`) with the model checkpoint, "properties" for the evaluate stage's rows (JSON in
`rows_json`).
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import ray
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from study.points import run_values, stage_config
from trainables.core.config import FinetuneConfig
from trainables.core.foundation import save_model
from trainables.stages.finetune import MODEL_FILE, run_finetune
from trainables.stages.inputs import PreparedInputs, inputs_for_mode
from trainables.stages.refine import refine_checkpoint


@ray.remote(num_cpus=0)
class _InputsMailbox:
    """Holds the reference to a study's inputs once the driver has built them; `get` waits till then."""

    def __init__(self):
        self._ready, self._box = asyncio.Event(), None

    async def put(self, box: list) -> None:
        self._box = box  # [ObjectRef]: in a list, Ray passes the reference on without fetching it
        self._ready.set()

    async def get(self) -> list:
        await self._ready.wait()
        return self._box


class SharedInputs:
    """A study's PreparedInputs in Ray's object store, fetched once per worker process.

    Tune's `with_parameters` would unpickle the whole object for every trial (about a second for the
    embedded default's graphs); a reused actor runs many trials and keeps this process's copy.
    Runs only read it (loaders collate new tensors), so trials can share it.

    It can exist before the inputs do: `SharedInputs()` then `put(inputs)`. Tune then starts the trial
    workers (a process start and the imports of torch and mace: seconds) while the driver still builds
    the graphs, and a trial's `get` waits for `put`. The mailbox lives on the driver's node, as does
    the object (the driver owns it), so losing another node loses neither."""

    _fetched: dict[str, PreparedInputs] = {}

    def __init__(self, inputs: PreparedInputs | None = None):
        self.key = uuid.uuid4().hex
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self._mailbox = _InputsMailbox.options(scheduling_strategy=here).remote()
        self._ref = None  # the driver's reference keeps the object alive; workers never need it
        if inputs is not None:
            self.put(inputs)

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key, "_mailbox": self._mailbox, "_ref": None}

    def put(self, inputs: PreparedInputs) -> None:
        self._ref = ray.put(inputs)
        ray.get(self._mailbox.put.remote([self._ref]))

    def get(self) -> PreparedInputs:
        if self.key not in SharedInputs._fetched:
            [ref] = ray.get(self._mailbox.get.remote())
            SharedInputs._fetched.clear()  # one study's inputs per process
            SharedInputs._fetched[self.key] = ray.get(ref)
        return SharedInputs._fetched[self.key]


def trial_config(config: dict[str, Any]) -> FinetuneConfig:
    """The FinetuneConfig a trial runs, on the device Ray gave it."""
    values = run_values(config)
    return FinetuneConfig.from_dict({**values, "device": trial_device(values.get("device", "auto"))})


def trial_device(requested: str) -> str:
    """A CUDA device only when Ray gave this trial GPUs (a CPU trial never touches a GPU)."""
    if requested != "auto":
        return requested
    import torch

    gpus = tune.get_context().get_trial_resources().required_resources.get("GPU", 0)
    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


def _report_with_model(metrics: dict[str, Any], write: Callable[[Path], None]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        write(Path(folder))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _final_metrics(result, **extra) -> dict[str, Any]:
    """The closing report: scores as JSON, and the validation metrics a searcher ranks trials by
    (infinite for a trial that diverged, so it ranks last)."""
    val = result.scores.get("val", {})
    return {"kind": "final", "status": result.status, "scores_json": json.dumps(result.scores),
            "val_energy_rmse_mev_atom": val.get("energy_rmse_mev_atom", math.inf),
            "val_force_rmse_mev_a": val.get("force_rmse_mev_a", math.inf),
            "steps": result.steps, "wall_time_s": result.wall_time_s, "compile_time_s": result.compile_time_s,
            "environment_json": json.dumps(result.environment),
            "resumed_from_step": result.resumed_from_step, **extra}


def epoch_reporter(checkpoint_every_s: float) -> Callable[[dict[str, Any], Callable[[Path], None]], None]:
    """Reports every epoch's curve point; adds the model and training state (a checkpoint) once
    `checkpoint_every_s` seconds have passed since the last one (0: every epoch). A checkpoint costs
    a fraction of a second, a lost one at most that many seconds of training."""
    last = time.monotonic()

    def report(record: dict[str, Any], write: Callable[[Path], None] | None) -> None:
        nonlocal last
        if write is None or time.monotonic() - last < checkpoint_every_s:
            tune.report({"kind": "epoch", **record})
            return
        _report_with_model({"kind": "epoch", **record}, write)
        last = time.monotonic()

    return report


def _save_final(result, folder: Path) -> None:
    """A stage's final checkpoint: the model and its optimizer's state at those weights (the spectrum
    evaluator's preconditioner, trainables.core.curvature)."""
    save_model(result.model, folder / MODEL_FILE)
    result.optimizer_record.save(folder)


def first_order_trainable(config: dict[str, Any], shared: SharedInputs, checkpoint_every_s: float = 0.0) -> None:
    """Fine-tune one (optimizer, lr, seed); resumes from Ray's last checkpoint after a failure."""
    run, inputs = trial_config(config), shared.get()
    checkpoint = tune.get_checkpoint()
    epoch_report = epoch_reporter(checkpoint_every_s)
    if checkpoint is None:
        result = run_finetune(run, inputs, on_epoch=epoch_report)
    else:
        with checkpoint.as_directory() as folder:
            result = run_finetune(run, inputs, resume_from=Path(folder), on_epoch=epoch_report)
    if result.status == "ok":
        _report_with_model(_final_metrics(result, cost_json=json.dumps(result.cost)),
                           lambda folder: _save_final(result, folder))
    else:
        tune.report(_final_metrics(result))


def lbfgs_trainable(config: dict[str, Any], shared: SharedInputs) -> None:
    """Refine a first-order trial's final model with the L-BFGS stage (Algorithm 1).

    The stage's grid holds whole trial configs (`study.points.later_stage_space`)."""
    config = stage_config(config)
    run = trial_config(config)
    with tune.Checkpoint(config["parent_checkpoint"]).as_directory() as folder:
        result = refine_checkpoint(run, Path(folder), inputs_for_mode(shared.get(), run.mode), config["lbfgs"])
    for record in result.records[:-1]:
        tune.report({"kind": "step", **record})
    last = {"kind": "step", **result.records[-1]}
    tune.report(last)
    _report_with_model(_final_metrics(result, stop_reason=result.stop_reason, best_step=result.best_step,
                                      fevals=result.fevals),
                       lambda folder: _save_final(result, folder))


def evaluate_trainable(config: dict[str, Any], structures, references: dict[str, Any]) -> None:
    """The physical properties of one finished model (`trainables.properties`): one report of its
    rows. `structures` (PropertyStructures) and `references` are the study's, computed once by the
    driver. A model that breaks an evaluation gives rows with a status, not an error."""
    from trainables.core.training import set_threads
    from trainables.properties import PropertySettings, evaluate_properties, mace_calculator

    config = stage_config(config)
    run = trial_config(config)
    set_threads(run.threads)
    settings = PropertySettings.from_dict(config["properties"])
    start = time.perf_counter()
    with tune.Checkpoint(config["model_checkpoint"]).as_directory() as folder:
        calculator = mace_calculator(Path(folder) / MODEL_FILE, device=run.device)
        rows = evaluate_properties(calculator, structures, references, settings)  # the spectrum reads the folder
    tune.report({"kind": "properties", "rows_json": json.dumps(rows), "wall_time_s": time.perf_counter() - start})
