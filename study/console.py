"""`optistudy COMMAND [options]`: the console script that installing the package puts on the PATH,
one name for the commands `python -m` runs (each keeps its own options and `--help`):

    optistudy launch --space lr_ablation        # python -m study.launch
    optistudy finetune --optimizer adamw        # python -m trainables.finetune
    optistudy refine --from run/                # python -m trainables.refine
    optistudy build-default --rebuild           # python -m trainables.build_default
    optistudy spectrum run/                     # python -m trainables.spectrum
    optistudy analysis table results/lr_ablation --by optimizer,lr   # python -m analysis

A command's module is imported only when it runs: `optistudy analysis` loads neither torch nor Ray.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass

from trainables.cli import OneLineParser


@dataclass(frozen=True)
class Command:
    module: str  # whose `main(argv) -> int` runs the command
    summary: str


COMMANDS = {
    "launch": Command("study.launch", "run a study of a search space on Ray"),
    "finetune": Command("trainables.finetune", "fine-tune a foundation once, with one optimizer"),
    "refine": Command("trainables.refine", "refine a fine-tuned run with the L-BFGS stage"),
    "build-default": Command("trainables.build_default", "build (or rebuild) the embedded default"),
    "spectrum": Command("trainables.spectrum", "the curvature of a run's final model"),
    "analysis": Command("analysis.cli", "tables, fronts, verdicts and reports of finished studies"),
}


def build_parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  {name:<14} {command.summary} (python -m {command.module.removesuffix('.cli')})"
                         for name, command in COMMANDS.items())
    parser = OneLineParser(prog="optistudy", formatter_class=argparse.RawDescriptionHelpFormatter,
                           description=f"commands:\n{commands}\n\n`optistudy COMMAND --help` lists its options.")
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="the command's own arguments")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command with the rest of `argv`; returns its exit status."""
    args = build_parser().parse_args(argv)
    return importlib.import_module(COMMANDS[args.command].module).main(args.arguments)
