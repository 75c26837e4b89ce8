"""The L-BFGS stage's time per step, its evaluations through the compiled training step vs eager MACE.

    OMP_NUM_THREADS=1 python benchmarks/lbfgs_stage_speed.py [--steps 8] [--pairs 2] [--epochs 3]

One process, one thread, the embedded default at full size in the study's replay mode (100 replay
configurations). A first-order run (Adam, lr 1e-3, `--epochs` epochs) gives the start model; the
stage (`trainables.stages.refine.run_refinement`, early stopping off) then runs `--steps` steps from it
with `compile` on and off, alternately, `--pairs` times, so that the machine's drift hits both
sides alike. A step is one L-BFGS iteration: its evaluations of Eq. 1 over the training set and
the validation of the new point. The first compiled run includes building (or loading) the
compiled step; the table's per-step times leave out step 0 (the start point's evaluation), which
carries that cost, and report it apart. Both sides must take the same steps: the table shows the
last loss and validation force RMSE of each.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for category in (UserWarning, DeprecationWarning):  # mace's TorchScript warnings would bury the table
    warnings.simplefilter("ignore", category)

from benchmarks._common import study_fixed  # noqa: E402
from trainables.core.config import FinetuneConfig  # noqa: E402
from trainables.core.lbfgs import LBFGSConfig  # noqa: E402
from trainables.stages.finetune import run_finetune  # noqa: E402
from trainables.stages.inputs import prepare_inputs  # noqa: E402
from trainables.stages.refine import RefineResult, run_refinement  # noqa: E402

SIDES = {"compiled": True, "eager": False}


def step_seconds(result: RefineResult) -> list[float]:
    """Seconds of each step after step 0, from the records' cumulative wall times."""
    walls = [record["wall_time_s"] for record in result.records]
    return [later - earlier for earlier, later in zip(walls, walls[1:])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the first-order run giving the start")
    parser.add_argument("--data-size", default="full")
    args = parser.parse_args()

    config = FinetuneConfig.from_dict({**study_fixed(args.epochs, args.data_size), "optimizer": "adam", "lr": 1e-3,
                                       "threads": 1})
    inputs = prepare_inputs(config)
    start = run_finetune(config.replace(compile=False), inputs).model
    lbfgs = LBFGSConfig(max_steps=args.steps, patience=args.steps + 1)  # no early stop: every run takes its steps
    per_step: dict[str, list[float]] = {side: [] for side in SIDES}
    first_point: dict[str, list[float]] = {side: [] for side in SIDES}
    last: dict[str, RefineResult] = {}
    for pair in range(args.pairs):
        order = list(SIDES) if pair % 2 == 0 else list(reversed(SIDES))
        for side in order:
            result = run_refinement(config.replace(compile=SIDES[side]), copy.deepcopy(start), inputs, lbfgs)
            per_step[side] += step_seconds(result)
            first_point[side].append(result.records[0]["wall_time_s"])
            last[side] = result
            print(f"pair {pair + 1}, {side}: {result.steps} steps, {result.fevals} evaluations, "
                  f"{result.wall_time_s:.1f} s", flush=True)

    print(f"\nL-BFGS stage, {args.steps} steps from Adam's {args.epochs} epochs, {args.data_size} data, replay mode, "
          f"{len(inputs.graphs['train'])} training configurations, 1 thread, {args.pairs} runs a side\n")
    print(f"{'':<10} {'median s/step':>14} {'min':>7} {'max':>7} {'step 0 s (1st run)':>19} {'last loss':>11} "
          f"{'last val F':>11}")
    for side in SIDES:
        times, final = per_step[side], last[side].records[-1]
        print(f"{side:<10} {statistics.median(times):>14.2f} {min(times):>7.2f} {max(times):>7.2f} "
              f"{first_point[side][0]:>19.1f} {final['loss']:>11.6f} {final['val_force_rmse_mev_a']:>11.2f}")
    ratio = statistics.median(per_step["compiled"]) / statistics.median(per_step["eager"])
    print(f"\ncompiled / eager, median time per step: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
