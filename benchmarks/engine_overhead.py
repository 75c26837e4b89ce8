"""What the Ray study engine adds to the wall time of a set of trials run one after another.

    python benchmarks/engine_overhead.py [--trials 4] [--epochs 3] [--repeats 1] [--profile]

The same trials (adam and adamw x `--trials / 2` seeds, lr 1e-3, the embedded default at full
size, the study default: replay mode with 100 replay configurations, batch size 5, one thread)
run through both sides below, each in a fresh process with OMP_NUM_THREADS=1, `--repeats` times
alternately, in the order plain, ray, ray, plain, plain, ray, ... (the speed of a shared machine
drifts over minutes; a steady drift then favours neither side):
- ray:   `python -m study.launch --space <tmp>/overhead.toml --num-cpus 1 --max-concurrent 1`
         (per-epoch checkpoints, Parquet rows and the summary table included: that is the engine);
- plain: `benchmarks/plain_loop.py SPACE`: `prepare_inputs` once, then `run_finetune` per trial.
Both wall times cover the whole process (imports and data preparation included). The table also
splits each into time inside trials (run_finetune's own wall time) and outside. Ray's fixed cost
(import, `ray.init`, one no-op Tune trial) is measured on its own in this process. Goal: ray /
plain <= 1.05 (the median over the pairs). `--profile` adds a cProfile breakdown of data preparation and one plain trial.
Before anything is timed, one two-step run builds the embedded default and compiles the step
(`warm_caches`), so that a fresh machine's first pair does not time them.
"""

from __future__ import annotations

import cProfile
import inspect
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for category in (UserWarning, DeprecationWarning):  # mace's TorchScript warnings would bury the table
    warnings.simplefilter("ignore", category)

from benchmarks._common import StudyRun, launch, study_fixed, trial_grid, trial_parser, warm_caches, write_space  # noqa: E402
from benchmarks.plain_loop import PlainProcess, trial_configs  # noqa: E402


def ray_fixed_cost(folder: Path) -> dict[str, float]:
    """Seconds to import Ray Tune, start a local one-CPU Ray and run one no-op trial."""
    import trainables.stages.finetune  # noqa: F401  torch and mace first: both sides import them

    times, start = {}, time.perf_counter()
    from ray import tune

    times["import ray, tune"] = time.perf_counter() - start
    from study.cluster import init_ray

    start = time.perf_counter()
    init_ray(None, num_cpus=1)
    times["ray.init (local, 1 CPU)"] = time.perf_counter() - start
    start = time.perf_counter()
    tune.Tuner(lambda config: tune.report({"x": 1}),
               run_config=tune.RunConfig(storage_path=str(folder / "noop"), verbose=0)).fit()
    times["one no-op Tune trial"] = time.perf_counter() - start
    import ray

    ray.shutdown()
    return times


def profile_breakdown(space_path: Path, top: int = 8) -> str:
    """cProfile of prepare_inputs and one plain trial: each one's direct callees by cumulative time."""
    from trainables.core.training import evaluate, set_threads, train_epoch
    from trainables.stages.finetune import run_finetune
    from trainables.stages.inputs import prepare_inputs

    set_threads(1)
    config = trial_configs(space_path)[0]
    profiler = cProfile.Profile()
    profiler.enable()
    run_finetune(config, prepare_inputs(config))
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    parents = (prepare_inputs, run_finetune, train_epoch, evaluate)
    return "\n\n".join(callee_table(stats, parent, top) for parent in parents)


def callee_table(stats: dict, parent: Callable, top: int) -> str:
    """The functions `parent` called directly, with the cumulative seconds spent in them from there
    (cProfile keys a function by its code's file, first line and name)."""
    code = inspect.unwrap(parent).__code__
    key = (code.co_filename, code.co_firstlineno, code.co_name)
    total = stats[key][3]
    calls = [(f"{Path(k[0]).name}:{k[2]}", callers[key][3]) for k, (*_, callers) in stats.items() if key in callers]
    calls.sort(key=lambda item: -item[1])
    lines = [f"{parent.__name__}: {total:.1f} s under cProfile, direct callees:"]
    lines += [f"  {name:<48} {seconds:>7.2f} s {100 * seconds / total:>5.1f} %" for name, seconds in calls[:top]]
    rest = total - sum(seconds for _, seconds in calls[:top])
    return "\n".join(lines + [f"  {'(its own code and the rest)':<48} {rest:>7.2f} s {100 * rest / total:>5.1f} %"])


@dataclass
class Pair:
    """One plain run and one ray run, one right after the other."""

    plain_wall: float
    plain: dict
    ray: StudyRun

    @property
    def ratio(self) -> float:
        return self.ray.process_s / self.plain_wall


def run_pair(space: Path, folder: Path, index: int) -> Pair:
    """Plain then ray for odd `index`, ray then plain for even: over pairs 1 and 2 (3 and 4, ...)
    a machine that speeds up or slows down steadily favours neither side."""
    def plain_side() -> tuple[float, dict]:
        plain_wall, plain = PlainProcess(space).wait()
        print(f"#{index} plain: {plain_wall:.1f} s (prepare_inputs {plain['prepare_s']:.1f} s)", flush=True)
        return plain_wall, plain

    def ray_side() -> StudyRun:
        ray_run = launch(space, folder, f"ray{index}", ["--num-cpus", "1", "--max-concurrent", "1"])
        if ray_run.returncode != 0:
            raise SystemExit(f"study.launch failed (exit {ray_run.returncode}); see {ray_run.log}")
        print(f"#{index} ray: {ray_run.process_s:.1f} s (Tune fit {ray_run.study_s:.1f} s); log {ray_run.log}",
              flush=True)
        return ray_run

    if index % 2:
        (plain_wall, plain), ray_run = plain_side(), ray_side()
    else:
        ray_run, (plain_wall, plain) = ray_side(), plain_side()
    return Pair(plain_wall, plain, ray_run)


def format_table(pairs: list[Pair]) -> str:
    """Wall time split into trials (run_finetune's own time) and the rest; the first trial of a
    process also compiles the training step, the later ones reuse it."""
    lines = [f"{'run':<9} {'wall (s)':>9} {'in trials (s)':>14} {'outside (s)':>12} {'first trial (s)':>16} "
             f"{'later trials, mean (s)':>23} {'ray / plain':>12}"]
    for index, pair in enumerate(pairs, 1):
        for side, wall, trials in (("plain", pair.plain_wall, pair.plain["trial_s"]),
                                   ("ray", pair.ray.process_s, pair.ray.trial_s)):
            inside, later = sum(trials), trials[1:] or trials
            ratio = f"{pair.ratio:.3f}" if side == "ray" else ""
            lines.append(f"{f'#{index} {side}':<9} {wall:>9.1f} {inside:>14.1f} {wall - inside:>12.1f} {trials[0]:>16.1f} "
                         f"{sum(later) / len(later):>23.1f} {ratio:>12}")
    return "\n".join(lines)


def outside_summary(pairs: list[Pair]) -> str:
    """Ray's cost outside the trials, averaged over the pairs: the part of the ratio that the
    machine's drift in training speed (both sides run the same run_finetune) does not blur."""
    plain_out = statistics.mean(p.plain_wall - sum(p.plain["trial_s"]) for p in pairs)
    ray_out = statistics.mean(p.ray.process_s - sum(p.ray.trial_s) for p in pairs)
    plain_wall = statistics.mean(p.plain_wall for p in pairs)
    return (f"outside the trials, mean over {len(pairs)}: ray {ray_out:.1f} s, plain {plain_out:.1f} s; Ray adds "
            f"{ray_out - plain_out:.1f} s = {100 * (ray_out - plain_out) / plain_wall:.1f}% of plain's mean wall "
            f"{plain_wall:.1f} s")


def main() -> int:
    parser = trial_parser(__doc__, default_trials=4)
    parser.add_argument("--repeats", type=int, default=1, help="plain/ray pairs, run in the order plain, ray, "
                        "ray, plain, ...; the median ratio is reported (this machine's speed drifts by 10-20%% "
                        "over minutes)")
    parser.add_argument("--profile", action="store_true", help="also profile preparation and one plain trial")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="optistudy-overhead-"))
    optimizers, seeds = trial_grid(args.trials)
    warm_caches(study_fixed(args.epochs, args.data_size))
    space = write_space(folder, "overhead", optimizers, seeds,
                        study_fixed(args.epochs, args.data_size))
    pairs = [run_pair(space, folder, index) for index in range(1, args.repeats + 1)]
    fixed = ray_fixed_cost(folder)
    print(f"\n{len(seeds) * len(optimizers)} trials ({', '.join(optimizers)} x seeds {seeds}), {args.epochs} epochs, "
          f"{args.data_size} data, replay mode, 1 CPU, one trial at a time")
    print(format_table(pairs))
    for index, pair in enumerate(pairs, 1):
        ray_run = pair.ray
        per_trial = (ray_run.study_s - sum(ray_run.trial_s)) / len(ray_run.trial_s)
        print(f"#{index}: ray's Tune fit {ray_run.study_s:.1f} s, {per_trial:.1f} s per trial outside run_finetune "
              "(mostly the first trial's wait for its worker's start and imports and for the inputs); "
              "before the trials (manifest setup_s): " + ", ".join(f"{k} {v:.1f} s" for k, v in ray_run.setup_s.items())
              + f"; plain prepare_inputs {pair.plain['prepare_s']:.1f} s")
    print("Ray's fixed cost, measured alone: " + ", ".join(f"{k} {v:.1f} s" for k, v in fixed.items()))
    print(outside_summary(pairs))
    ratios = [pair.ratio for pair in pairs]
    print(f"ray / plain wall time = {statistics.median(ratios):.3f} (median of {len(ratios)}: "
          f"{', '.join(f'{r:.3f}' for r in ratios)}; goal <= 1.05)")
    if args.profile:
        print("\n" + profile_breakdown(space))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
