"""Processes that start compiling the same training step at once, with and without the node lock.

    OMP_NUM_THREADS=1 python benchmarks/compile_contention.py [--processes 2,4] [--data-size smoke]

What a study's first wave of trials does on a node with a cold compiler cache (a cluster's new node,
trials packed at a fraction of a GPU or a CPU): N processes start together, each prepares the
embedded default's inputs, builds the compiled training step and takes one step. Per N, three runs:
`unlocked` (every process compiles for itself, as before `trainables.speed.compile_lock`; the lock is
replaced by a no-op in the children) and `locked` (the default: one compiles, the others wait and
load it from the cache), each with an empty inductor cache of its own, then `locked, warm` on the
cache the locked run left (a node that has compiled the step before: no process waits). The table
gives each process's seconds from the common start to its first step done, and the ratio locked /
unlocked of the mean and of the last one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import single_thread_env, study_fixed  # noqa: E402


def child(result_file: Path, data_size: str, lock: bool) -> None:
    """One process: inputs, the compiled step, one training step; writes when each was done."""
    import torch

    from trainables.core.config import FinetuneConfig
    from trainables.core.data import training_loader
    from trainables.core.loss import eq1_loss
    from trainables.core.training import forward
    from trainables.speed import compiled
    from trainables.stages.finetune import loss_weights
    from trainables.stages.inputs import prepare_inputs

    if not lock:
        compiled.first_compile_on_node = lambda key: contextlib.nullcontext()
    torch.set_num_threads(1)
    config = FinetuneConfig.from_dict({**study_fixed(1, data_size), "optimizer": "adam", "lr": 1e-3, "threads": 1})
    inputs = prepare_inputs(config)
    ready = time.time()
    model, step_model = compiled.training_modules(inputs.initial_model())
    batch = next(iter(training_loader(inputs.graphs["train"], config.batch_size, seed=0)))
    eq1_loss(batch, forward(step_model, batch, training=True), loss_weights(config)).backward()
    result_file.write_text(json.dumps({"inputs_ready": ready, "first_step": time.time()}))


def wave(processes: int, cache: Path, data_size: str, lock: bool, folder: Path) -> list[dict]:
    """Start `processes` children at once on inductor cache `cache`; their times from the start."""
    env = single_thread_env(TORCHINDUCTOR_CACHE_DIR=str(cache))
    start = time.time()
    running = []
    for index in range(processes):
        result = folder / f"{cache.name}-{index}.json"
        command = [sys.executable, __file__, "--child", str(result), "--data-size", data_size]
        running.append((subprocess.Popen(command + ([] if lock else ["--no-lock"]), cwd=ROOT, env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), result))
    times = []
    for process, result in running:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a child failed (exit {process.returncode}): {stderr.strip().splitlines()[-1:]}")
        marks = json.loads(result.read_text())
        times.append({name: value - start for name, value in marks.items()})
    return sorted(times, key=lambda t: t["first_step"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", default="2,4", help="comma-separated numbers of processes")
    parser.add_argument("--data-size", default="smoke")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-lock", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data_size, lock=not args.no_lock)
        return 0

    rows = []
    with tempfile.TemporaryDirectory(prefix="compile-contention-") as tmp:
        folder = Path(tmp)
        for processes in [int(n) for n in args.processes.split(",")]:
            for side, cache, lock in (("unlocked", f"unlocked-{processes}", False),
                                      ("locked", f"locked-{processes}", True),
                                      ("locked, warm", f"locked-{processes}", True)):
                times = wave(processes, folder / cache, args.data_size, lock, folder)
                rows.append((side, processes, times))
                firsts = ", ".join(f"{t['first_step']:.0f}" for t in times)
                print(f"{side}, {processes} processes: first steps at {firsts} s", flush=True)

    print(f"\n{args.data_size} data, {os.cpu_count()} CPUs, 1 thread a process; seconds from the common start\n")
    print(f"{'':<14} {'processes':>9} {'inputs ready (mean)':>20} {'first step: mean':>17} {'last':>7}")
    summary = {}
    for side, processes, times in rows:
        mean, last = statistics.mean(t["first_step"] for t in times), times[-1]["first_step"]
        summary[side, processes] = (mean, last)
        ready = statistics.mean(t["inputs_ready"] for t in times)
        print(f"{side:<14} {processes:>9} {ready:>20.1f} {mean:>17.1f} {last:>7.1f}")
    print()
    for processes in sorted({p for _, p, _ in rows}):
        (lock_mean, lock_last), (free_mean, free_last) = summary["locked", processes], summary["unlocked", processes]
        print(f"{processes} processes, locked / unlocked: mean {lock_mean / free_mean:.2f}, "
              f"last {lock_last / free_last:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
