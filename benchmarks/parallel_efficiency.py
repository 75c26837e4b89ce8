"""Parallel efficiency of the study engine on one machine: the same trials one at a time and K at once.

    python benchmarks/parallel_efficiency.py [--trials 4] [--epochs 3] [--repeats 1] [--no-plain]
    python benchmarks/parallel_efficiency.py --space lr_ablation [--repeats 2]

The trials (adam and adamw x `--trials / 2` seeds, lr 1e-3, the embedded default at full size,
the study default: replay mode with 100 replay configurations, batch size 5) run through
`python -m study.launch --num-cpus N --cpus-per-trial 1` with `--max-concurrent 1`, then with
`--max-concurrent K` for K = 2 and, where the machine has more, K = os.cpu_count() (N = that
machine's CPU count throughout; one torch thread per trial). Speedup(K) = wall(1) / wall(K), on
the Tune fit (the trials) and on the whole process; efficiency = speedup / K. With more trials
than K x (a few), the last wave's imbalance matters less, and so does the process's fixed time
(starting Ray and the trial workers, checking the data, building the graphs: about 25 s on 2
cores, which weighs more against 8 trials of 20 s than against a study's 63). Goal: speedup >= 1.8
with K = 2. Where trials ran faster two at a time than alone (the machine sped up between the
runs), the speedups are also given at equal trial speed (times that ratio), which removes the
drift's gift and nothing else. With `--repeats R` the pair of studies runs R times, in the
order K = 1, 2 and then 2, 1, so that a machine speeding up or slowing down steadily favours each
side once; the median speedup over the repeats is the figure.
Before anything is timed, one two-step run builds the embedded default and compiles the step
(`warm_caches`), so that a fresh machine's first study does not time them.

`--space NAME` (or a space file) times a grid space's own trials instead, as `study.launch --space
NAME` runs them: `--space lr_ablation` is the main command at 1 and at 2 trials at once (63 trials of
seven optimizers, about 17 and 9 minutes here). Its plain side is not run: its grid does not split
into K equal parts by seed (lr_ablation has three seeds), so `--no-plain` is implied.

What the machine itself allows, without Ray: the same trials through K plain processes side by
side (`benchmarks/plain_loop.py`, each with its share of the seeds, one thread each), against one
process running them all. Its speedup is the ceiling any engine can reach on this machine; the
trial slowdown (mean trial time with K at once / alone) shows how much K trials slow each other
(shared caches, memory bandwidth, a host's other tenants). `--no-plain` skips it.
"""

from __future__ import annotations

import os
import statistics
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


def named_space(name: str) -> tuple[Path, dict, str]:
    """A registry space or space file (a first-order grid): its path for study.launch, its fixed
    values (for `warm_caches`) and a line describing it."""
    from search_spaces import get_space
    from trainables.errors import ConfigError

    try:
        space = get_space(name)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    if space.search != "grid" or space.has_lbfgs:
        raise SystemExit(f"--space {name}: only a first-order grid space can be timed here")
    trials = len(space.optimizers) * len(space.lrs) * len(space.seeds)
    return Path(name).resolve() if Path(name).is_file() else Path(space.name), space.fixed, (
        f"(space {space.name}: {len(space.optimizers)} optimizers x {len(space.lrs)} lrs x {len(space.seeds)} "
        f"seeds = {trials}, fixed {space.fixed})")


def mean_trial_s(run: StudyRun) -> float:
    return sum(run.trial_s) / len(run.trial_s)


def speedup_with_two(alone: StudyRun, two: StudyRun) -> str:
    """The goal's line, and where trials ran faster two at a time than alone, the same at equal trial speed."""
    fit, process = alone.study_s / two.study_s, alone.process_s / two.process_s
    line = f"speedup with 2 concurrent trials = {fit:.2f} on the Tune fit, {process:.2f} on the whole process (goal >= 1.8)"
    slowdown = mean_trial_s(two) / mean_trial_s(alone)
    if slowdown < 1:
        line += (f"\na trial ran {slowdown:.2f}x as long two at a time as alone (the machine sped up between the runs); "
                 f"at equal trial speed {fit * slowdown:.2f} on the Tune fit, {process * slowdown:.2f} on the whole process")
    return line


def format_table(runs: dict[int, StudyRun], plain: dict[int, Wave]) -> str:
    base = runs[1]
    lines = [f"{'side':<6} {'K':>3} {'Tune fit (s)':>15} {'process (s)':>12} {'speedup':>8} {'speedup process':>16} "
             f"{'efficiency':>11} {'mean trial (s)':>15} {'trial slowdown':>15}"]
    for k, run in runs.items():
        fit, process = base.study_s / run.study_s, base.process_s / run.process_s
        mean, base_mean = mean_trial_s(run), mean_trial_s(base)
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
    parser.add_argument("--repeats", type=int, default=1,
                        help="pairs of studies, K = 1 then 2, then 2 then 1, ...; the median speedup is the figure")
    parser.add_argument("--space", help="a grid space's own trials (e.g. lr_ablation) instead of --trials/--epochs")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    folder = Path(tempfile.mkdtemp(prefix="optistudy-parallel-"))
    if args.space:
        space, fixed, description = named_space(args.space)
        optimizers, seeds, args.no_plain = [], [], True
    else:
        optimizers, seeds = trial_grid(args.trials)
        fixed = study_fixed(args.epochs, args.data_size)
        space = write_space(folder, "parallel", optimizers, seeds, fixed)
        description = (f"({', '.join(optimizers)} x seeds {seeds}), {args.epochs} epochs, {args.data_size} data, "
                       "replay mode")
    warm_caches(fixed)
    repeats = []
    for repeat in range(args.repeats):
        levels = concurrency_levels(cpus)
        runs = {}
        for k in levels if repeat % 2 == 0 else levels[::-1]:  # 1, 2, then 2, 1: a steady drift cancels out
            runs[k] = launch(space, folder, f"k{k}-r{repeat}", ["--num-cpus", str(cpus), "--cpus-per-trial", "1",
                                                                "--max-concurrent", str(k)])
            if runs[k].returncode != 0:
                raise SystemExit(f"study.launch failed (exit {runs[k].returncode}); see {runs[k].log}")
            print(f"repeat {repeat + 1}, K={k}: Tune fit {runs[k].study_s:.1f} s, process {runs[k].process_s:.1f} s",
                  flush=True)
        repeats.append(dict(sorted(runs.items())))
    plain = {}
    for k in [] if args.no_plain else concurrency_levels(cpus):
        plain[k] = plain_wave(folder, k, optimizers, seeds, fixed)
        print(f"plain K={k}: {plain[k].wall_s:.1f} s", flush=True)
    print(f"\n{len(repeats[0][1].trial_s)} trials {description}, {cpus} CPUs, 1 CPU and 1 thread per trial")
    for repeat, runs in enumerate(repeats):
        print(f"repeat {repeat + 1} (K in the order {'1, 2' if repeat % 2 == 0 else '2, 1'})")
        print(format_table(runs, plain if repeat == len(repeats) - 1 else {}))
        if 2 in runs:
            print(speedup_with_two(runs[1], runs[2]))
    if 2 not in repeats[0]:
        return 0
    fits = [runs[1].study_s / runs[2].study_s for runs in repeats]
    processes = [runs[1].process_s / runs[2].process_s for runs in repeats]
    process = statistics.median(processes)
    if len(repeats) > 1:
        print(f"median of {len(repeats)} repeats: speedup with 2 concurrent trials = {statistics.median(fits):.2f} "
              f"on the Tune fit ({', '.join(f'{x:.2f}' for x in fits)}), {process:.2f} on the whole process "
              f"({', '.join(f'{x:.2f}' for x in processes)}) (goal >= 1.8)")
    if 2 in plain:
        ceiling = plain[1].wall_s / plain[2].wall_s
        print(f"2 plain processes: speedup {ceiling:.2f}, a trial {plain[2].mean_trial_s / plain[1].mean_trial_s:.2f}x "
              f"slower than alone; the engine's process speedup is {process / ceiling:.2f} of that ceiling")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
