"""What the property evaluators cost per trial: seconds of each on one model of the embedded default.

    OMP_NUM_THREADS=1 python benchmarks/property_stage.py [--size full] [--md-steps 2000]

One process, one thread. The model is the embedded default's foundation on the target's elements
(the model a trial starts from, exported as a run's `model.pt` and loaded by mace's ASE calculator
in float64), so the figures are a trial's, whatever its optimizer. The labeller's references are
computed first and timed apart (a study computes them once). Prints evaluator, seconds, and the
statuses of its rows; evaluators the system cannot take are listed as skipped (0 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for category in (UserWarning, DeprecationWarning):  # mace's TorchScript warnings would bury the table
    warnings.simplefilter("ignore", category)

from trainables.core.config import FinetuneConfig  # noqa: E402
from trainables.core.foundation import save_model  # noqa: E402
from trainables.core.replay import export_task_head  # noqa: E402
from trainables.core.training import set_threads  # noqa: E402
from trainables.embedded import build_system, default_system_name  # noqa: E402
from trainables.properties import (  # noqa: E402
    PropertySettings,
    embedded_references,
    embedded_structures,
    get_evaluator,
    mace_calculator,
    run_evaluator,
)
from trainables.stages.finetune import MODEL_FILE  # noqa: E402
from trainables.stages.inputs import prepare_inputs  # noqa: E402


def exported_start_model(size: str, folder: Path) -> Path:
    inputs = prepare_inputs(FinetuneConfig(data_size=size, compile=False, threads=1))
    return save_model(export_task_head(inputs.initial_model()), folder / MODEL_FILE)


def _number(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="full", help="embedded data size (full, smoke)")
    parser.add_argument("--md-steps", type=int, default=PropertySettings().md_steps)
    parser.add_argument("--rows", action="store_true", help="also print every row (value, reference, status, note)")
    args = parser.parse_args()
    set_threads(1)
    settings = dataclasses.replace(PropertySettings(), md_steps=args.md_steps)
    files = build_system(default_system_name(), size=args.size, progress=lambda _: None)
    start = time.perf_counter()
    structures = embedded_structures(files)
    references = embedded_references(files, structures, settings)
    reference_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        calculator = mace_calculator(exported_start_model(args.size, Path(folder)))
    print(f"system {files.name} ({args.size}), {len(structures.minimum)} atoms; MD {settings.md_steps} steps of "
          f"{settings.md_timestep_fs} fs at {settings.md_temperature_K} K")
    print(f"{'evaluator':<16} {'seconds':>8}  statuses")
    total = 0.0
    for name in settings.evaluators:
        start = time.perf_counter()
        rows = run_evaluator(get_evaluator(name), calculator, structures, references.get(name), settings)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{name:<16} {seconds:>8.2f}  {', '.join(sorted({row['status'] for row in rows}))}")
        for row in rows if args.rows else ():
            print(f"    {row['property']:<28} {_number(row['value'])} (ref {_number(row['reference'])}) {row['unit']:<6} "
                  f"{row['status']} {row['note']}")
    print(f"{'total':<16} {total:>8.2f}  (references, once per study: {reference_s:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
