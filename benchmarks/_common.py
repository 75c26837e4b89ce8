"""Shared helpers of the engine benchmarks: a space file in a temporary folder, `study.launch` as a
subprocess, and what a finished study left behind (its wall time, its trials' own wall times)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
def study_fixed(epochs: int, data_size: str) -> dict:
    """The study default (lr_ablation, optimizer_benchmark): multi-head replay with 100 replay
    configurations, batch size 5 (20 replay configurations at the smoke size, whose corpus has 64)."""
    return {"batch_size": 5, "mode": "replay", "replay_samples": 20 if data_size == "smoke" else 100,
            "epochs": epochs, "data_size": data_size}


def single_thread_env(**extra: str) -> dict[str, str]:
    """The environment of a benchmark subprocess: one BLAS/OMP thread, no warnings on stderr."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **extra}


def write_space(folder: Path, name: str, optimizers: list[str], seeds: list[int], fixed: dict) -> Path:
    """A grid space file (`optimizers` x lr 1e-3 x `seeds`, first-order only) with `fixed` values."""
    lines = [f'description = "benchmark space {name}"', f"optimizers = {json.dumps(optimizers)}",
             "lrs = [1e-3]", f"seeds = {json.dumps(seeds)}", 'stages = ["first_order"]', "", "[fixed]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in fixed.items()]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def trial_grid(trials: int) -> tuple[list[str], list[int]]:
    """adam and adamw, `trials // 2` seeds each (the benchmarks' trial set)."""
    return ["adam", "adamw"], list(range(max(1, trials // 2)))


@dataclass
class StudyRun:
    """One `study.launch` run: process wall time, the study's own wall time (Tune's fit, from the
    manifest), the trials' run_finetune wall times (from scores.parquet) and the manifest's
    `setup_s` (check_data, build_inputs and ray_init; the last two overlap)."""

    process_s: float
    study_s: float
    trial_s: list[float]
    returncode: int
    log: Path
    setup_s: dict[str, float] = field(default_factory=dict)


def launch(space: Path, storage: Path, name: str, flags: list[str]) -> StudyRun:
    """`python -m study.launch --space SPACE ... --quiet` in a fresh process; its output goes to a log."""
    command = [sys.executable, "-m", "study.launch", "--space", str(space), "--storage", str(storage),
               "--name", name, "--quiet", *flags]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=single_thread_env(), capture_output=True, text=True)
    process_s = time.perf_counter() - start
    log = storage / f"{name}.log"
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return StudyRun(process_s, float("nan"), [], done.returncode, log)
    manifest = json.loads((storage / name / "manifest.json").read_text())
    scores = pd.read_parquet(storage / name / "results" / "scores.parquet")
    trial_s = scores.drop_duplicates("trial_id")["wall_time_s"].tolist()
    return StudyRun(process_s, float(manifest["wall_time_s"]), trial_s, done.returncode, log, manifest.get("setup_s", {}))


def warm_caches(fixed: dict) -> None:
    """Build the embedded default and compile the trials' step before anything is timed: one
    two-step run of the same configuration (`trainables.stages.finetune`). Without it, a benchmark of the
    engine on a fresh machine times the data build, pretraining and compilation in its first study."""
    flags = [item for key, value in fixed.items() for item in (f"--{key.replace('_', '-')}", str(value))]
    command = [sys.executable, "-m", "trainables.finetune", "--optimizer", "adam", "--lr", "1e-3", "--seed", "0",
               *flags, "--max-steps", "2"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=single_thread_env(), capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stdout + done.stderr).strip().splitlines() or ["no output"]
        raise SystemExit(f"warming the caches failed (exit {done.returncode}): {lines[-1]}")
    print(f"caches warm ({time.perf_counter() - start:.0f} s: data, foundation and compiled step)", flush=True)


def trial_parser(doc: str, default_trials: int) -> argparse.ArgumentParser:
    """The arguments every engine benchmark shares: how many trials, how long, on which data size."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=default_trials,
                        help="an even number: adam and adamw x trials/2 seeds")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-size", default="full")
    return parser
