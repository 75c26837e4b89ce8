"""Trials per hour when several trials share a GPU (`--gpus-per-trial 1, 0.5, 0.25`).

    python benchmarks/gpu_packing.py [--trials 8] [--epochs 3]

Runs only where torch sees a CUDA GPU; elsewhere it prints "no CUDA GPU: skipped" and exits 0.
The same trials (adam and adamw x `--trials / 2` seeds, lr 1e-3, the embedded default at full
size, the study default: replay mode with 100 replay configurations, batch size 5, float32) run
through `python -m study.launch --num-gpus G --gpus-per-trial F --cpus-per-trial 1` for each
fraction F, G being the GPUs torch sees; up to G / F trials share the GPUs at once (and no more
than the CPUs allow). Trials per hour = trials / Tune fit wall time x 3600; the ratio is each
fraction's against one GPU per trial. Before anything is timed, one two-step run on the GPU builds
the embedded default and compiles the CUDA step (`warm_caches`), so that the first fraction's
trials do not pay a cold compile that the later ones load from the cache.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    StudyRun, launch, study_fixed, trial_grid, trial_parser, warm_caches, write_space)

FRACTIONS = (1.0, 0.5, 0.25)


def format_table(runs: dict[float, StudyRun], gpus: int, cpus: int) -> str:
    base = len(runs[1.0].trial_s) / runs[1.0].study_s
    lines = [f"{'GPU/trial':>9} {'at once':>8} {'Tune fit (s)':>13} {'mean trial (s)':>15} {'trials/hour':>12} "
             f"{'vs 1 GPU':>9}"]
    for fraction, run in runs.items():
        rate = len(run.trial_s) / run.study_s
        lines.append(f"{fraction:>9g} {min(int(gpus / fraction), cpus):>8} {run.study_s:>13.1f} "
                     f"{sum(run.trial_s) / len(run.trial_s):>15.1f} {3600 * rate:>12.0f} {rate / base:>9.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = trial_parser(__doc__, default_trials=8)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU: skipped")
        return 0
    gpus, cpus = torch.cuda.device_count(), os.cpu_count() or 1
    folder = Path(tempfile.mkdtemp(prefix="optistudy-gpu-"))
    optimizers, seeds = trial_grid(args.trials)
    fixed = study_fixed(args.epochs, args.data_size)
    warm_caches(fixed)
    space = write_space(folder, "gpu", optimizers, seeds, fixed)
    runs = {}
    for fraction in FRACTIONS:
        flags = ["--num-gpus", str(gpus), "--num-cpus", str(cpus), "--gpus-per-trial", str(fraction),
                 "--cpus-per-trial", "1"]
        runs[fraction] = launch(space, folder, f"f{fraction:g}", flags)
        if runs[fraction].returncode != 0:
            raise SystemExit(f"study.launch failed (exit {runs[fraction].returncode}); see {runs[fraction].log}")
        print(f"{fraction:g} GPU per trial: Tune fit {runs[fraction].study_s:.1f} s", flush=True)
    print(f"\n{args.trials} trials, {args.epochs} epochs, {args.data_size} data, replay mode, {gpus} GPU(s) "
          f"({torch.cuda.get_device_name(0)}), {cpus} CPUs")
    print(format_table(runs, gpus, cpus))
    print(f"trials per hour at 0.25 GPU / at 1 GPU = "
          f"{(len(runs[0.25].trial_s) / runs[0.25].study_s) / (len(runs[1.0].trial_s) / runs[1.0].study_s):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
