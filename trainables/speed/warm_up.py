"""Compile a fine-tuning run's training step beside the embedded foundation's pretraining.

The compiled step (trainables.speed.compiled) depends on the foundation's architecture, not on its
weights: Dynamo passes the weights, buffers and float constants (such as the average number of
neighbours) into the graph as inputs. Inductor keeps what it compiles in an on-disk cache keyed
by the graph. Pretraining starts from a model of the final architecture and then trains on one
core for minutes, so a second process runs two steps of the run's own configuration on that
untrained model meanwhile; the study's first trials then load the compiled step from the cache
instead of each building it.

A study's L-BFGS stage needs nothing more: on a CPU its chunks are kept to the first-order batches'
variant of the step (trainables.stages.refine.chunk_configurations), which the trials load from the cache.

Pretraining's end does not wait for the process: what it still compiles, a trial that needs it
waits for on the node's compile lock (trainables.speed.compile_lock), and the first-order trials start at once.

Best effort: should the second process fail, one line says so and the trials compile for
themselves, as they would without it.

The second process is `python -m MODULE CONFIG.json`, MODULE given by the caller (the stages layer's
`trainables.stages.warm_compile`): this layer knows no training stage.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from typing import Any, Callable, Mapping

import torch

from trainables.core.config import FinetuneConfig
from trainables.core.foundation import save_model
from trainables.speed.side_process import SideProcess

WARM_STEPS = 2


def worth_warming(config: FinetuneConfig | None) -> bool:
    """A run that compiles its step, on a machine with a core beside the one pretraining uses."""
    return config is not None and config.compile and len(os.sched_getaffinity(0)) >= 2


class CompileWarmUp:
    """The second process, `python -m module` on `config`: `start(untrained)` launches it, `finish()`
    reports how it ended (from a thread if it still runs; `wait()` for that); as a context manager,
    an error in the `with` block stops it."""

    def __init__(self, config: FinetuneConfig, module: str, progress: Callable[[str], None] = print):
        self._config, self._module, self._progress = config, module, progress
        self._side = SideProcess("optistudy-warm-compile-")  # its files; removed at the end
        self.folder = self._side.folder
        self._reporter: threading.Thread | None = None

    def start(self, untrained: torch.nn.Module) -> None:
        foundation = save_model(untrained, self.folder / "untrained_foundation.pt")
        config = self._config.replace(foundation=str(foundation), epochs=1, max_steps=WARM_STEPS, threads=1)
        self._side.start(self._module, self._write("config.json", config.to_dict()))
        self._progress("compiling the fine-tuning step in a second process while the foundation pretrains")

    def _write(self, name: str, values: Mapping[str, Any]) -> str:
        (self.folder / name).write_text(json.dumps(values))
        return str(self.folder / name)

    def finish(self) -> None:
        """Say how the second process ended; if it still runs, the caller goes on and a thread reports
        it when it ends. A trial that needs a step the process is compiling waits for it on the node's
        compile lock (trainables.speed.compile_lock); the process is ended at exit if the caller is
        done first."""
        if not self._side.running():
            self._report()
            return
        self._progress("pretraining done; going on while the second process compiles (a trial that needs "
                       "its step waits for it)")
        atexit.register(self.stop)
        self._reporter = threading.Thread(target=self._report, name="compile-warm-up", daemon=True)
        self._reporter.start()

    def wait(self) -> None:
        """Return once `finish` has reported (at once unless it left a thread to do it)."""
        if self._reporter is not None:
            self._reporter.join()

    def _report(self) -> None:
        code = self._side.wait()
        if code is not None:
            outcome = f"{self._side.seconds():.0f} s; {self._side.last_log_line()}"
            if code == 0:
                self._progress(f"compiled the fine-tuning step beside pretraining ({outcome})")
            else:
                self._progress(f"compiling the fine-tuning step beside pretraining failed (exit {code}, {outcome}); "
                               f"the first trials compile it themselves")
        self._side.remove_folder()

    def stop(self) -> None:
        """End the second process now (pretraining failed or was interrupted)."""
        self._side.stop()

    def __enter__(self) -> "CompileWarmUp":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is None:
            self.finish()
        else:
            self.stop()
