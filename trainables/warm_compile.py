"""Compile a fine-tuning run's training step beside the embedded foundation's pretraining.

The compiled step (trainables.compiled) depends on the foundation's architecture, not on its
weights: Dynamo passes the weights, buffers and float constants (such as the average number of
neighbours) into the graph as inputs. Inductor keeps what it compiles in an on-disk cache keyed
by the graph. Pretraining starts from a model of the final architecture and then trains on one
core for minutes, so a second process runs two steps of the run's own configuration on that
untrained model meanwhile; the study's first trials then load the compiled step from the cache
instead of each building it. On the embedded default (2 cores), a study of two trials from a
foundation-less cache took 409 s instead of 468 s: pretraining took 49 s longer beside the second
process, and the trials 111 s less.

Best effort: should the second process fail, one line says so and the trials compile for
themselves, as they would without it.

    python -m trainables.warm_compile CONFIG.json     # what the second process runs
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from trainables.config import FinetuneConfig
from trainables.foundation import save_model

WARM_STEPS = 2


def worth_warming(config: FinetuneConfig | None) -> bool:
    """A run that compiles its step, on a machine with a core beside the one pretraining uses."""
    return config is not None and config.compile and len(os.sched_getaffinity(0)) >= 2


class CompileWarmUp:
    """The second process: `start(untrained)` launches it, `finish()` waits for it and reports;
    as a context manager, an error in the `with` block stops it."""

    def __init__(self, config: FinetuneConfig, progress: Callable[[str], None] = print):
        self._config, self._progress = config, progress
        self.folder = Path(tempfile.mkdtemp(prefix="optistudy-warm-compile-"))  # its files; removed at the end
        self._process: subprocess.Popen | None = None
        self._started = 0.0

    def start(self, untrained: torch.nn.Module) -> None:
        foundation = save_model(untrained, self.folder / "untrained_foundation.pt")
        config = self._config.replace(foundation=str(foundation), epochs=1, max_steps=WARM_STEPS, threads=1)
        (self.folder / "config.json").write_text(json.dumps(config.to_dict()))
        with open(self.folder / "log.txt", "wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "trainables.warm_compile", str(self.folder / "config.json")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._started = time.perf_counter()
        self._progress("compiling the fine-tuning step in a second process while the foundation pretrains")

    def finish(self) -> None:
        """Wait for the second process and say how it ended."""
        if self._process is not None:
            code = self._process.wait()
            outcome = f"{time.perf_counter() - self._started:.0f} s; {self._last_log_line()}"
            if code == 0:
                self._progress(f"compiled the fine-tuning step beside pretraining ({outcome})")
            else:
                self._progress(f"compiling the fine-tuning step beside pretraining failed (exit {code}, {outcome}); "
                               f"the first trials compile it themselves")
        shutil.rmtree(self.folder, ignore_errors=True)

    def stop(self) -> None:
        """End the second process now (pretraining failed or was interrupted)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _last_log_line(self) -> str:
        lines = (self.folder / "log.txt").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def __enter__(self) -> "CompileWarmUp":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is None:
            self.finish()
        else:
            self.stop()


def main(argv: list[str] | None = None) -> int:
    from trainables.cli import run_cli
    from trainables.finetune import run_finetune

    def _main() -> int:
        start = time.perf_counter()
        config = FinetuneConfig.from_dict(json.loads(Path((sys.argv[1:] if argv is None else argv)[0]).read_text()))
        result = run_finetune(config)
        print(f"{result.steps} steps, {result.status}, in {time.perf_counter() - start:.0f} s")
        return 0

    return run_cli(_main)


if __name__ == "__main__":
    raise SystemExit(main())
