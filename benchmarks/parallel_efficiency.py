"""Parallel efficiency of the study engine on one machine: the same trials one at a time and K at once.

    python benchmarks/parallel_efficiency.py [--trials 4] [--epochs 3]

The trials (adam and adamw x `--trials / 2` seeds, lr 1e-3, the embedded default at full size,
the study default: replay mode with 100 replay configurations, batch size 5) run through
`python -m study.launch --num-cpus N --cpus-per-trial 1` with `--max-concurrent 1`, then with
`--max-concurrent K` for K = 2 and, where the machine has more, K = os.cpu_count() (N = that
machine's CPU count throughout; one torch thread per trial). Speedup(K) = wall(1) / wall(K), on
the Tune fit (the trials) and on the whole process; efficiency = speedup / K. With more trials
than K x (a few), the last wave's imbalance matters less. Goal: speedup >= 1.8 with K = 2.
Before anything is timed, one two-step run builds the embedded default and compiles the step
(`warm_caches`), so that a fresh machine's first study does not time them.

What the machine itself allows, without Ray: the same trials through K plain processes side by
side (`benchmarks/plain_loop.py`, each with its share of the seeds, one thread each), against one
process running them all. Its speedup is the ceiling any engine can reach on this machine; the
trial slowdown (mean trial time with K at once / alone) shows how much K trials slow each other
(shared caches, memory bandwidth, a host's other tenants). `--no-plain` skips it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import StudyRun, launch, study_fixed, trial_grid, trial_parser, warm_caches, write_space  # noqa: E402
from benchmarks.plain_loop import PlainProcess  # noqa: E402


def concurrency_levels(cpus: int) -> list[int]:
    """1, 2 and, where more CPUs exist, all of them."""
    return sorted({1, min(2, cpus), cpus})


@dataclass
class Wave:
    """K runs side by side: the wall time until the last one ends, and every trial's own time."""

    wall_s: float
    trial_s: list[float]

    @property
    def mean_trial_s(self) -> float:
        return sum(self.trial_s) / len(self.trial_s)


def plain_wave(folder: Path, k: int, optimizers: list[str], seeds: list[int], fixed: dict) -> Wave:
    """The trials split by seed over K plain processes started together."""
    if len(seeds) < k:
        raise SystemExit(f"--trials must be at least {2 * k} to give each of {k} plain processes a seed")
    spaces = [write_space(folder, f"plain-k{k}-{i}", optimizers, seeds[i::k], fixed) for i in range(k)]
    start = time.perf_counter()
    processes = [PlainProcess(space) for space in spaces]
    parts = [process.wait()[1] for process in processes]
    return Wave(time.perf_counter() - start, [t for part in parts for t in part["trial_s"]])


def format_table(runs: dict[int, StudyRun], plain: dict[int, Wave]) -> str:
    base = runs[1]
    lines = [f"{'side':<6} {'K':>3} {'Tune fit (s)':>15} {'process (s)':>12} {'speedup':>8} {'speedup process':>16} "
             f"{'efficiency':>11} {'mean trial (s)':>15} {'trial slowdown':>15}"]
    for k, run in runs.items():
        fit, process = base.study_s / run.study_s, base.process_s / run.process_s
        mean, base_mean = sum(run.trial_s) / len(run.trial_s), sum(base.trial_s) / len(base.trial_s)
        lines.append(f"{'ray':<6} {k:>3} {run.study_s:>15.1f} {run.process_s:>12.1f} {fit:>8.2f} {process:>16.2f} "
                     f"{fit / k:>11.2f} {mean:>15.1f} {mean / base_mean:>15.2f}")
    for k, wave in plain.items():
        speedup = plain[1].wall_s / wave.wall_s
        lines.append(f"{'plain':<6} {k:>3} {'-':>15} {wave.wall_s:>12.1f} {'-':>8} {speedup:>16.2f} "
                     f"{speedup / k:>11.2f} {wave.mean_trial_s:>15.1f} {wave.mean_trial_s / plain[1].mean_trial_s:>15.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = trial_parser(__doc__, default_trials=4)
    parser.add_argument("--no-plain", action="store_true", help="skip the plain-process ceiling")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    folder = Path(tempfile.mkdtemp(prefix="optistudy-parallel-"))
    optimizers, seeds = trial_grid(args.trials)
    fixed = study_fixed(args.epochs, args.data_size)
    warm_caches(fixed)
    space = write_space(folder, "parallel", optimizers, seeds, fixed)
    runs = {}
    for k in concurrency_levels(cpus):
        runs[k] = launch(space, folder, f"k{k}", ["--num-cpus", str(cpus), "--cpus-per-trial", "1",
                                                   "--max-concurrent", str(k)])
        if runs[k].returncode != 0:
            raise SystemExit(f"study.launch failed (exit {runs[k].returncode}); see {runs[k].log}")
        print(f"K={k}: Tune fit {runs[k].study_s:.1f} s, process {runs[k].process_s:.1f} s", flush=True)
    plain = {}
    for k in [] if args.no_plain else concurrency_levels(cpus):
        plain[k] = plain_wave(folder, k, optimizers, seeds, fixed)
        print(f"plain K={k}: {plain[k].wall_s:.1f} s", flush=True)
    print(f"\n{len(runs[1].trial_s)} trials ({', '.join(optimizers)} x seeds {seeds}), {args.epochs} epochs, "
          f"{args.data_size} data, replay mode, {cpus} CPUs, 1 CPU and 1 thread per trial")
    print(format_table(runs, plain))
    if 2 in runs:
        process = runs[1].process_s / runs[2].process_s
        print(f"speedup with 2 concurrent trials = {runs[1].study_s / runs[2].study_s:.2f} on the Tune fit, "
              f"{process:.2f} on the whole process (goal >= 1.8)")
    if 2 in plain:
        ceiling = plain[1].wall_s / plain[2].wall_s
        print(f"2 plain processes: speedup {ceiling:.2f}, a trial {plain[2].mean_trial_s / plain[1].mean_trial_s:.2f}x "
              f"slower than alone; the engine's process speedup is {process / ceiling:.2f} of that ceiling")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
