"""Refine a first-order run's saved model with the L-BFGS stage (`trainables.stages.refine`), once:

    python -m trainables.refine --from DIR [--max-steps 30] [--out DIR2]

where DIR is the output folder of `python -m trainables.finetune --out DIR`. See `--help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

from trainables.cli import command_parser, format_scores, parse_bool, run_command
from trainables.core.config import DEFAULT_CHUNK, FinetuneConfig
from trainables.core.lbfgs import LBFGSConfig
from trainables.errors import ConfigError
from trainables.stages.finetune import write_run_folder
from trainables.stages.refine import refine_checkpoint


def format_step(record: Mapping[str, Any]) -> str:
    return (f"step {record['step']:>3}  loss {record['loss']:.5g}  |g| {record['grad_norm']:.3g}  "
            f"alpha {record['alpha']:.3g}  fevals {record['fevals']}  damped {str(record['damped']):<5}  "
            f"val F {record['val_force_rmse_mev_a']:.1f} meV/A  {record['wall_time_s']:.1f} s")


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("trainables.refine", __doc__)
    parser.add_argument("--from", dest="source", type=Path, required=True,
                        help="output folder of a first-order run (model.pt and metrics.json)")
    parser.add_argument("--out", type=Path, help="folder for the refined model and metrics")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK,
                        help="most configurations per chunk of Eq. 1 (compiled on a CPU: fewer where a chunk would pass 4096 edges)")
    parser.add_argument("--compile", type=parse_bool, default=argparse.SUPPRESS, metavar="{true,false}",
                        help="evaluate Eq. 1 through the compiled training step (default: as the first-order run)")
    for f in dataclasses.fields(LBFGSConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default),
                            default=argparse.SUPPRESS)
    return parser


def refine(namespace: argparse.Namespace) -> int:
    """The command: the run folder's model refined, its steps and scores printed."""
    args = vars(namespace)
    source, out = args.pop("source"), args.pop("out")
    metrics = source / "metrics.json"
    if not metrics.is_file():
        raise ConfigError(f"{source} is not a first-order run folder (no metrics.json)")
    saved = json.loads(metrics.read_text())["config"]
    config = FinetuneConfig.from_dict({**saved, **({"compile": args.pop("compile")} if "compile" in args else {})})
    result = refine_checkpoint(config, source, options=args)
    for record in result.records:
        print(format_step(record))
    print(f"stop: {result.stop_reason}  best step: {result.best_step}  evaluations: {result.fevals}  "
          f"wall time: {result.wall_time_s:.1f} s")
    print(format_scores(result.scores))
    if out:
        write_run_folder(out, result.model, {"config": config.to_dict(), "lbfgs": args, "records": result.records,
                                             "scores": result.scores, "stop_reason": result.stop_reason})
        result.optimizer_record.save(out)  # the stage's L-BFGS pairs, for the spectrum's preconditioner
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(_parser(), refine, argv)


if __name__ == "__main__":
    raise SystemExit(main())
