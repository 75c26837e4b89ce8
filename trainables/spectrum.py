"""The curvature of one run's final model, plain and preconditioned by its optimizer (the `spectrum`
evaluator of `trainables.properties.spectrum`):

    python -m trainables.spectrum RUN_FOLDER [--configurations 8] [--lanczos-steps 15] [--probes 2]

RUN_FOLDER holds model.pt and optimizer_state.pt: the --out of `python -m trainables.finetune` or
`python -m trainables.refine`, or a study's final checkpoint. Prints one row per property and
writes them to RUN_FOLDER/spectrum.json. See `--help`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from trainables.cli import OneLineParser, run_command
from trainables.core.training import set_threads
from trainables.files import write_text_atomically
from trainables.properties import PropertySettings, get_evaluator
from trainables.properties.spectrum import compare_spectrum, measure_run

SETTINGS = ("configurations", "lanczos_steps", "probes", "top_eigenvalues", "quantile", "relative_floor")


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m trainables.spectrum", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a run folder: model.pt and optimizer_state.pt")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    for name in SETTINGS:
        default = getattr(PropertySettings(), f"spectrum_{name}")
        parser.add_argument(f"--{name.replace('_', '-')}", dest=f"spectrum_{name}", type=type(default),
                            default=default, help=f"PropertySettings.spectrum_{name} (default {default})")
    return parser


def spectrum(namespace: argparse.Namespace) -> int:
    """The command: the run folder's spectrum rows printed and written to spectrum.json."""
    args = vars(namespace)
    folder, device = args.pop("folder"), args.pop("device")
    set_threads(args.pop("threads"))
    settings = PropertySettings.from_dict({"evaluators": ["spectrum"], **args})
    start = time.perf_counter()
    measured = measure_run(folder, settings, device)
    rows = get_evaluator("spectrum").rows(compare_spectrum(measured, None), time.perf_counter() - start)
    for row in rows:
        value = "-" if row["value"] is None else f"{row['value']:.6g}"
        print(f"{row['property']:<24} {value:>14} {row['unit']}")
    write_text_atomically(folder / "spectrum.json", json.dumps(rows, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(_parser(), spectrum, argv)


if __name__ == "__main__":
    raise SystemExit(main())
