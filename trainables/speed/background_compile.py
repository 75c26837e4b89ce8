"""Eager steps while a second process compiles the training step; the compiled step once it is ready.

On a foundation-sized model the compiled step's first call compiles for minutes (MACE-MP-0 small's
shape: 172 s on a cold cache, against 0.7 s an eager step), so a short fine-tuning run spends most
of its time waiting for the compiler. `EagerUntilCompiled` takes the steps eagerly meanwhile: its
first call hands the model's architecture and that batch to a second process, which runs the
compiled step once (forward, forces, backward) into this node's compiler cache, under the node's
compile lock (`trainables.speed.compile_lock`). When that process has finished, the next step goes
through the compiled view, which loads the step from the cache instead of compiling it. A run is
then never much slower than eager, and as fast as compiled once the compile is paid for.

Only the first variant of the step (`trainables.speed.compiled.call_signature`) is compiled aside;
later variants compile in the training process, as they would without this module. On a node where
the step is already compiled (a marker of the compile lock) the compiled view runs from the first
step. The numbers of eager and compiled steps agree to float rounding (tests/trainables/speed).

    python -m trainables.speed.background_compile JOB.pt     # what the second process runs
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from trainables.core.foundation import load_foundation, save_model
from trainables.speed.compile_lock import is_compiled_on_node, step_key
from trainables.speed.compiled import call_signature, compiled_view, eager_copy
from trainables.speed.side_process import SideProcess


class EagerUntilCompiled(torch.nn.Module):
    """A MACE-like module over `eager` (from `trainables.speed.compiled.eager_copy`): `eager`'s outputs
    until a second process has compiled the step's first variant, then those of a compiled view of
    `eager` (`step`). `switched_at` is the first call through `step` (None until then)."""

    def __init__(self, eager: torch.nn.Module, step: torch.nn.Module | None = None,
                 progress: Callable[[str], None] = print):
        super().__init__()
        self.eager, self._progress = eager, progress
        self.step = step if step is not None else compiled_view(eager)  # e.g. a reused process's compiled view
        self._job: BackgroundCompile | None = None
        self.calls, self.switched_at = 0, None

    def forward(self, data: dict, **options):
        self.calls += 1
        if self.calls == 1:
            self._compile_aside_unless_compiled(data, options)
        if self.switched_at is None and (self._job is None or self._job.finished()):
            self.switched_at = self.calls
        if self.switched_at is None:
            return self.eager(aliases(data), **options)
        return self.step(data, **options)

    def _compile_aside_unless_compiled(self, data: dict, options: dict) -> None:
        key = step_key(self.step._architecture, call_signature((data,), options))  # as the step's first variant
        if not is_compiled_on_node(key):
            self._job = BackgroundCompile(self.eager, data, options, self._progress)

    def close(self) -> None:
        """Stop the second process if it still runs (the run ended before it finished)."""
        if self._job is not None:
            self._job.stop()


def aliases(data: dict) -> dict:
    """The batch's tensors as new tensor objects over the same memory. An eager step leaves gradients
    (`.grad`) on the inputs it differentiates; Dynamo, meeting such a batch again in a later compiled
    step, names the graph's dimensions differently, and the step it traces gets another cache key
    than the one the second process compiled (which it then compiles again)."""
    return {name: value.detach().requires_grad_(value.requires_grad) if isinstance(value, torch.Tensor) else value
            for name, value in data.items()}


class BackgroundCompile:
    """The second process: started at construction, `finished()` polls it (True once it has ended,
    whether it compiled or not: a failure is said in one line, and the training process then
    compiles the step itself, where a model that cannot be compiled stops with the remedy)."""

    def __init__(self, eager: torch.nn.Module, data: dict, options: dict, progress: Callable[[str], None]):
        self._progress, self._side = progress, SideProcess("optistudy-background-compile-")
        self._side.start(__name__, str(write_job(self._side.folder, eager, data, options)), env=_single_thread_env())
        progress("compiling the training step in a second process; taking eager steps meanwhile")

    def finished(self) -> bool:
        code = self._side.poll()
        if code is None:
            return False
        seconds = self._side.seconds()
        if code == 0:
            self._progress(f"the second process compiled the training step in {seconds:.0f} s; "
                           f"going on with the compiled step")
        else:
            self._progress(f"compiling the training step in a second process failed (exit {code}: "
                           f"{self._side.last_log_line()}); compiling it here")
        self._side.remove_folder()
        return True

    def stop(self) -> None:
        self._side.stop()


def _single_thread_env() -> dict[str, str]:
    """The second process computes on one thread: its step's numbers do not matter, its compile
    (inductor's own worker processes) is what it is for, and the training process keeps its cores."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def write_job(folder: Path, eager: torch.nn.Module, data: dict, options: dict) -> Path:
    """What the second process needs to trace the same graph: the model (`save_model`'s file), which
    of its parameters are frozen, one batch of the variant and the call's options."""
    model = save_model(eager, folder / "model.pt")
    frozen = [name for name, parameter in eager.named_parameters() if not parameter.requires_grad]
    batch = {name: value.detach() if isinstance(value, torch.Tensor) else value for name, value in data.items()}
    device = str(next(eager.parameters()).device)
    torch.save({"model": str(model), "frozen": frozen, "data": batch, "options": options, "device": device},
               folder / "job.pt")
    return folder / "job.pt"


def model_of_job(job: dict) -> torch.nn.Module:
    """The eager model `write_job` described, as `trainables.speed.compiled.eager_copy` builds one."""
    model = load_foundation(job["model"])
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in job["frozen"])
    return eager_copy(model).to(job["device"])


def compile_job(path: Path) -> str:
    """Run the compiled step of the job at `path` once, forward and backward (the backward graph
    compiles at its first call), which leaves both in this node's compiler cache."""
    job = torch.load(path, weights_only=False)
    torch.set_num_threads(1)
    step = compiled_view(model_of_job(job))
    _gradient_of_outputs(step, job)
    return f"compiled {len(step.compiled_keys)} variant(s) of the training step"


def _gradient_of_outputs(module: torch.nn.Module, job: dict) -> None:
    """Backward from all outputs that carry a gradient: the same backward graph as the loss's."""
    data = {name: value.clone() if isinstance(value, torch.Tensor) else value for name, value in job["data"].items()}
    data["positions"].requires_grad_(True)
    output = module(data, **job["options"])
    sum(value.square().sum() for value in output.values()
        if isinstance(value, torch.Tensor) and value.requires_grad).backward()


if __name__ == "__main__":
    began = time.perf_counter()
    print(f"{compile_job(Path(sys.argv[1]))} in {time.perf_counter() - began:.0f} s", flush=True)
