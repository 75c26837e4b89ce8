"""What training in float64 costs a step, against float32 (the spaces' choice).

    python benchmarks/dtype_step_time.py [--steps 40] [--rounds 3] [--batch-size 5]

mace trains in float64 by default (`--default_dtype float64`); the spaces train in float32. Scores
do not depend on that choice for their precision: reference energies are kept in float64 as read
and predicted energies are summed in float64 (trainables.core.loss), so relative energies resolve
well below 0.01 meV at |E| ~ 10^4 eV either way. What float64 changes is the arithmetic of the
model (its own rounding, ~1e-7 relative in float32) and the time of a step.

Both dtypes fine-tune the embedded foundation on the embedded default's training set with Adam,
lr 1e-3, one thread, eagerly (the compiled step compiles per dtype: minutes, not what is measured).
They take turns, `--rounds` times `--steps` steps each, so a machine's drift falls on both; the
first round is a warm-up and is left out. Prints the median step time of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for category in (UserWarning, DeprecationWarning):  # mace's TorchScript warnings would bury the table
    warnings.simplefilter("ignore", category)

from trainables.core import data as D  # noqa: E402
from trainables.core.config import FinetuneConfig  # noqa: E402
from trainables.core.optimizers import get_optimizer_spec  # noqa: E402
from trainables.core.training import seed_everything, set_threads, train_epoch  # noqa: E402
from trainables.stages.finetune import loss_weights  # noqa: E402
from trainables.stages.inputs import prepare_inputs  # noqa: E402

DTYPES = ("float32", "float64")


class Run:
    """One dtype's model, optimizer and loader, stepped `steps` at a time."""

    def __init__(self, dtype: str, batch_size: int):
        self.config = FinetuneConfig(dtype=dtype, batch_size=batch_size, compile=False, threads=1)
        inputs = prepare_inputs(self.config)
        seed_everything(0)
        self.model = inputs.initial_model()
        self.optimizer = get_optimizer_spec("adam").build(self.model.parameters(), lr=1e-3)
        self.loader = D.training_loader(inputs.graphs["train"], batch_size, seed=0)

    def seconds_per_step(self, steps: int) -> float:
        start = time.perf_counter()
        stats = train_epoch(self.model, self.loader, self.optimizer, loss_weights(self.config), torch.device("cpu"),
                            10.0, None, max_steps=steps)
        return (time.perf_counter() - start) / max(stats.steps, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5)
    args = parser.parse_args()
    set_threads(1)
    runs = {dtype: Run(dtype, args.batch_size) for dtype in DTYPES}
    times: dict[str, list[float]] = {dtype: [] for dtype in DTYPES}
    for round_index in range(args.rounds + 1):
        for dtype, run in runs.items():
            seconds = run.seconds_per_step(args.steps)
            if round_index:  # the first round warms both up
                times[dtype].append(seconds)
    median = {dtype: statistics.median(values) for dtype, values in times.items()}
    print(f"{'dtype':<10} {'step (ms)':>10}   eager, 1 thread, batch {args.batch_size}, "
          f"{args.rounds} rounds of {args.steps} steps")
    for dtype in DTYPES:
        print(f"{dtype:<10} {1000 * median[dtype]:>10.1f}")
    print(f"ratio float64 / float32: {median['float64'] / median['float32']:.2f}")


if __name__ == "__main__":
    main()
