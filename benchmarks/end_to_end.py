"""End to end: `python -m study.launch --space SPACE` on the embedded default, from a cold cache
(the first run after set-up: the package's built default unpacked, or generated and pretrained
where its bundle does not match this machine) and then warm (cache reused).

    python benchmarks/end_to_end.py [--space lr_ablation] [--runs cold,warm] [--workdir DIR]

Prints a table of wall times and the cold/warm ratio; the goal for lr_ablation on 2 CPUs is at most
11 minutes cold. Each run writes a fresh study under DIR/studies; the cold run uses an empty cache
DIR/cache and an empty compiler cache DIR/torchinductor (torch.compile's kernels), the warm run the
caches the cold run left.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_study(space: str, workdir: Path, name: str, extra: list[str]) -> tuple[float, int, str]:
    env = {**os.environ, "OPTISTUDY_CACHE": str(workdir / "cache"), "PYTHONWARNINGS": "ignore",
           "TORCHINDUCTOR_CACHE_DIR": str(workdir / "torchinductor")}
    command = [sys.executable, "-m", "study.launch", "--space", space, "--storage", str(workdir / "studies"),
               "--name", name, "--quiet", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    (workdir / f"{name}.log").write_text(done.stdout + done.stderr)
    return time.perf_counter() - start, done.returncode, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="lr_ablation")
    parser.add_argument("--runs", default="cold,warm")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("extra", nargs="*", help="further study.launch arguments (after --)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="optistudy-e2e-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for run in args.runs.split(","):
        wall, code, stdout = run_study(args.space, workdir, f"{args.space}-{run}", args.extra)
        rows.append((run, wall, code))
        print(f"{run}: {wall / 60:.1f} min (exit {code}); log {workdir / f'{args.space}-{run}.log'}", flush=True)
        if code == 0:
            print(stdout.split("\nstudy ", 1)[-1][:4000], flush=True)
    print(f"\n{'run':<6} {'wall (min)':>10} {'exit':>5}")
    for run, wall, code in rows:
        print(f"{run:<6} {wall / 60:>10.1f} {code:>5}")
    times = dict((run, wall) for run, wall, _ in rows)
    if {"cold", "warm"} <= set(times):
        print(f"cold / warm = {times['cold'] / times['warm']:.2f}; cold vs 15-minute goal: "
              f"{times['cold'] / 900:.2f}x")
    return 0 if all(code == 0 for _, _, code in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
