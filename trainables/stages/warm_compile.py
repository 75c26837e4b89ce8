"""The second process of `trainables.speed.warm_up.CompileWarmUp`: the first steps of a fine-tuning
run on the untrained foundation, so that the step it compiles is in the compiler cache when the
study's trials start.

    python -m trainables.stages.warm_compile CONFIG.json [--save-compiled PATH]

With `--save-compiled`, what the process compiled is written as a shipped compiled step
(`trainables.speed.shipped_steps`; run it with an empty TORCHINDUCTOR_CACHE_DIR).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from trainables.cli import command_parser, run_command
from trainables.core.config import FinetuneConfig
from trainables.speed.compiled import compiled_variants
from trainables.speed.shipped_steps import save_compiled
from trainables.stages.finetune import run_finetune


def warm_steps(config: FinetuneConfig) -> str:
    """A first-order trial's first steps (compiling, or loading, the batches' variant)."""
    result = run_finetune(config)
    return f"{result.steps} steps, {result.status} (compiled variants: {compiled_variants()})"


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("trainables.stages.warm_compile", __doc__)
    parser.add_argument("config", type=Path, help="a FinetuneConfig as JSON")
    parser.add_argument("--save-compiled", type=Path, default=None, help="write what was compiled here")
    return parser


def warm_compile(args: argparse.Namespace) -> int:
    """The command: the steps run, what they compiled saved with `--save-compiled`."""
    start = time.perf_counter()
    config = FinetuneConfig.from_dict(json.loads(args.config.read_text()))
    print(f"{warm_steps(config)}; in {time.perf_counter() - start:.0f} s")
    if args.save_compiled:
        print(f"compiled step: {save_compiled(args.save_compiled)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(_parser(), warm_compile, argv)


if __name__ == "__main__":
    raise SystemExit(main())
