"""Parallel efficiency of the study engine on one machine: the same trials one at a time and K at once.

    python benchmarks/parallel_efficiency.py [--trials 4] [--epochs 3]

The trials (adam and adamw x `--trials / 2` seeds, lr 1e-3, the embedded default at full size,
the study default: replay mode with 100 replay configurations, batch size 5) run through
`python -m study.launch --num-cpus N --cpus-per-trial 1` with `--max-concurrent 1`, then with
`--max-concurrent K` for K = 2 and, where the machine has more, K = os.cpu_count() (N = that
machine's CPU count throughout; one torch thread per trial). Speedup(K) = wall(1) / wall(K), on
the Tune fit (the trials) and on the whole process; efficiency = speedup / K. With more trials
than K x (a few), the last wave's imbalance matters less. Goal: speedup >= 1.8 with K = 2.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import STUDY_FIXED, StudyRun, launch, trial_grid, trial_parser, write_space  # noqa: E402


def concurrency_levels(cpus: int) -> list[int]:
    """1, 2 and, where more CPUs exist, all of them."""
    return sorted({1, min(2, cpus), cpus})


def format_table(runs: dict[int, StudyRun]) -> str:
    base = runs[1]
    lines = [f"{'K':>3} {'Tune fit (s)':>13} {'process (s)':>12} {'speedup fit':>12} {'speedup process':>16} "
             f"{'efficiency':>11} {'mean trial (s)':>15}"]
    for k, run in runs.items():
        fit, process = base.study_s / run.study_s, base.process_s / run.process_s
        lines.append(f"{k:>3} {run.study_s:>13.1f} {run.process_s:>12.1f} {fit:>12.2f} {process:>16.2f} "
                     f"{fit / k:>11.2f} {sum(run.trial_s) / len(run.trial_s):>15.1f}")
    return "\n".join(lines)


def main() -> int:
    parser = trial_parser(__doc__, default_trials=4)
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    folder = Path(tempfile.mkdtemp(prefix="optistudy-parallel-"))
    optimizers, seeds = trial_grid(args.trials)
    space = write_space(folder, "parallel", optimizers, seeds,
                        {**STUDY_FIXED, "epochs": args.epochs, "data_size": args.data_size})
    runs = {}
    for k in concurrency_levels(cpus):
        runs[k] = launch(space, folder, f"k{k}", ["--num-cpus", str(cpus), "--cpus-per-trial", "1",
                                                   "--max-concurrent", str(k)])
        if runs[k].returncode != 0:
            raise SystemExit(f"study.launch failed (exit {runs[k].returncode}); see {runs[k].log}")
        print(f"K={k}: Tune fit {runs[k].study_s:.1f} s, process {runs[k].process_s:.1f} s", flush=True)
    print(f"\n{len(runs[1].trial_s)} trials ({', '.join(optimizers)} x seeds {seeds}), {args.epochs} epochs, "
          f"{args.data_size} data, replay mode, {cpus} CPUs, 1 CPU and 1 thread per trial")
    print(format_table(runs))
    if 2 in runs:
        print(f"speedup with 2 concurrent trials = {runs[1].study_s / runs[2].study_s:.2f} on the Tune fit, "
              f"{runs[1].process_s / runs[2].process_s:.2f} on the whole process (goal >= 1.8)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
