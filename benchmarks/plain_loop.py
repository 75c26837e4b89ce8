"""The engine benchmarks' reference: a space's trials in one plain Python process, no Ray.

    python benchmarks/plain_loop.py SPACE     # prints {"prepare_s": ..., "trial_s": [...]} as JSON

`prepare_inputs` once, then `run_finetune` for every grid point, one after another, each with one
thread: what a user would write instead of a study engine (or run K of, one per core).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, single_thread_env  # noqa: E402


def trial_configs(space_path: Path) -> list:
    """The FinetuneConfig of every grid point, as study.launch builds them (one thread each)."""
    from search_spaces import get_space
    from trainables.core.config import FinetuneConfig

    space = get_space(str(space_path))
    base = FinetuneConfig.from_dict({**space.fixed, "threads": 1})
    return [base.replace(optimizer=o, lr=lr, seed=s) for o in space.optimizers for lr in space.lrs for s in space.seeds]


def plain_loop(space_path: Path) -> dict:
    """prepare_inputs once, run_finetune per trial; seconds of each part."""
    from trainables.stages.finetune import run_finetune
    from trainables.stages.inputs import prepare_inputs

    configs = trial_configs(space_path)
    start = time.perf_counter()
    inputs = prepare_inputs(configs[0])
    prepare_s = time.perf_counter() - start
    trial_s = [run_finetune(config, inputs).wall_time_s for config in configs]
    return {"prepare_s": prepare_s, "trial_s": trial_s}


class PlainProcess:
    """`plain_loop` on a space in a fresh process (OMP_NUM_THREADS=1), started at once; `wait`
    returns (the process's wall seconds, its parts). Several can run side by side."""

    def __init__(self, space_path: Path):
        self.start = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, __file__, str(space_path)], cwd=ROOT,
                                        env=single_thread_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)

    def wait(self) -> tuple[float, dict]:
        out, err = self.process.communicate()
        wall = time.perf_counter() - self.start
        if self.process.returncode != 0:
            raise SystemExit(f"plain loop failed (exit {self.process.returncode}): {err.strip()[-2000:]}")
        return wall, json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("space", type=Path, help="a search space's .toml file (or a named space)")
    args = parser.parse_args(argv)
    for category in (UserWarning, DeprecationWarning):
        warnings.simplefilter("ignore", category)
    print(json.dumps(plain_loop(args.space)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
