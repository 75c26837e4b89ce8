"""What a `python -m analysis` command is: its declaration (`Command`: name, help, arguments, run,
examples) and what its run returns (`Output`), with the argument declarations commands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altair as alt

from analysis.render import FORMATS


@dataclass
class Output:
    """What a command produced: text for the terminal, and files for --out (name -> text or chart)."""

    text: str
    files: dict[str, str | alt.TopLevelMixin] = field(default_factory=dict)


@dataclass(frozen=True)
class Argument:
    """One `ArgumentParser.add_argument` call, declared: its flags (or positional name) and options."""

    flags: tuple[str, ...]
    options: dict[str, Any]

    def add_to(self, parser: argparse._ActionsContainer) -> None:
        parser.add_argument(*self.flags, **self.options)


def argument(*flags: str, **options: Any) -> Argument:
    """`Argument(flags, options)` written as the `add_argument` call it stands for."""
    return Argument(flags, options)


@dataclass(frozen=True)
class OneOf:
    """Arguments of which a command line gives at most one (argparse's mutually exclusive group)."""

    arguments: tuple[Argument, ...]

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_mutually_exclusive_group()
        for each in self.arguments:
            each.add_to(group)


@dataclass(frozen=True)
class Command:
    """One command: its `name`, a one-line `help` (also its description), its `arguments` in order,
    `run` (parsed arguments -> `Output`) and `examples`, the words after `python -m analysis NAME`
    in the help's examples."""

    name: str
    help: str
    arguments: tuple[Argument | OneOf, ...]
    run: Callable[[argparse.Namespace], Output]
    examples: tuple[str, ...] = ()

    def add_to(self, commands: argparse._SubParsersAction, prog: str) -> None:
        """Add this command's parser to `commands`, its run as the `run` default."""
        parser = commands.add_parser(self.name, help=self.help.replace("%", "%%"), description=self.help,
                                     epilog=examples_text(self.example_lines(prog)),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        for each in self.arguments:
            each.add_to(parser)
        parser.set_defaults(run=self.run)

    def example_lines(self, prog: str) -> list[str]:
        return [f"{prog} {self.name} {example}" for example in self.examples]


def examples_text(lines: list[str]) -> str | None:
    """An 'examples:' block of help text, or None without examples."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines) if lines else None


def names(text: str) -> list[str]:
    """A comma-separated argument as its list of names."""
    return [name.strip() for name in text.split(",") if name.strip()]


def numbers(text: str) -> list[float]:
    """A comma-separated argument as its list of numbers."""
    try:
        return [float(value) for value in names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None


def decimals(text: str) -> int:
    """A number of decimals to show: 0, 1, 2, ..."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a number of decimals (0, 1, 2, ...): {text!r}")
    return int(text)


def above_one(text: str) -> float:
    """A ratio above 1, such as the largest tau of a performance profile."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 1:
        raise argparse.ArgumentTypeError(f"not a ratio above 1: {text!r}")
    return value


STUDIES = (
    argument("studies", nargs="+", metavar="STUDY",
             help="study folder, its results/ folder, a .parquet file, or a glob pattern of these"),
    argument("--format", choices=FORMATS, default="text", help="terminal output format (default: text)"),
    argument("--out", type=Path, metavar="DIR", help="also write tables (csv, md, tex) and charts (html, png)"),
)
METRIC = argument("--metric", default="force_rmse_mev_a", help="metric column (default: %(default)s)")
DIGITS = argument("--digits", type=decimals, default=2, help="decimals shown (default: %(default)s)")


def filters(stage: str | None, *, with_stage: bool = True, with_test_set: bool = True) -> tuple[Argument, ...]:
    """The row filters (`analysis.load.load`'s): --stage (default `stage`, None for all), --optimizer,
    --lr and --test-set."""
    by_stage = (argument("--stage", type=names, default=[stage] if stage else None,
                         help=f"first_order, lbfgs or both, comma-separated (default: {stage or 'all'})"),)
    by_test_set = (argument("--test-set", type=names, help="only these test sets, comma-separated (e.g. 1200K)"),)
    return (*(by_stage if with_stage else ()),
            argument("--optimizer", type=names, help="only these optimizers, comma-separated"),
            argument("--lr", type=numbers, help="only these learning rates, comma-separated"),
            *(by_test_set if with_test_set else ()))
