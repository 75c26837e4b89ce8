"""Fine-tune a foundation model once, with one first-order optimizer (the stage a study's trials run:
`trainables.stages.finetune`). For debugging and scripting:

    python -m trainables.finetune --optimizer adamw --lr 1e-3 --seed 0 [--out DIR]

prints a metrics line per epoch and the final errors on every test set. See `--help`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainables.cli import add_config_arguments, command_parser, config_from_args, format_scores, run_command
from trainables.core.training import resolve_device, set_threads
from trainables.stages.finetune import run_finetune, score_all, write_run_folder
from trainables.stages.inputs import prepare_inputs


def format_record(record: dict[str, Any]) -> str:
    return (f"epoch {record['epoch']:>3}  steps {record['steps']:>5}  loss {record['loss']:.4g}  "
            f"val E {record['val_energy_rmse_mev_atom']:.2f} meV/atom  val F {record['val_force_rmse_mev_a']:.1f} meV/A  "
            f"{record['wall_time_s']:.1f} s")


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("trainables.finetune", __doc__)
    parser.add_argument("--out", type=Path, help="folder for the fine-tuned model (state_dict; the task head "
                        "as a single-head model, plus model_multihead.pt in replay mode) and metrics")
    parser.add_argument("--resume", type=Path, help="checkpoint folder written by an earlier run's --out")
    parser.add_argument("--zero-shot", action="store_true", help="only score the foundation, no training")
    add_config_arguments(parser)
    return parser


def finetune(args: argparse.Namespace) -> int:
    """The command: 0 where the run finished, 1 where it diverged or failed."""
    config = config_from_args(args)
    inputs = prepare_inputs(config)
    if args.zero_shot:
        set_threads(config.threads)
        model = inputs.initial_model()
        print(format_scores(score_all(model, inputs, config, resolve_device(config.device))))
        return 0
    result = run_finetune(config, inputs, resume_from=args.resume,
                          on_epoch=lambda record, _: print(format_record(record), flush=True))
    print(f"status: {result.status}  steps: {result.steps}  wall time: {result.wall_time_s:.1f} s "
          f"(compiling {result.compile_time_s:.1f} s)")
    if result.scores:
        print(format_scores(result.scores))
    if args.out:
        write_run_folder(args.out, result.model, {
            "config": config.to_dict(), "status": result.status, "records": result.records,
            "scores": result.scores, "steps": result.steps, "wall_time_s": result.wall_time_s,
            "compile_time_s": result.compile_time_s})
        result.optimizer_record.save(args.out)  # what the spectrum's preconditioner needs
    return 0 if result.status == "ok" else 1


def main(argv: list[str] | None = None) -> int:
    return run_command(_parser(), finetune, argv)


if __name__ == "__main__":
    raise SystemExit(main())
