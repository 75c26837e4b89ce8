"""Command line: `python -m analysis COMMAND STUDY... [options]`.

Each command prints a table in --format (text by default) and, with --out DIR, also writes its
tables as CSV, Markdown and LaTeX and its chart as HTML and PNG. Errors a user can fix (no
results, unknown column, test set or baseline, a filter matching nothing) print one line
`error: ...` on stderr and exit with code 2.

The commands are declared in `analysis.commands` (one module each); this module builds the parser
and the dispatch from them, runs one, prints its text and writes its files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import altair as alt

from analysis.commands import COMMANDS, Command
from analysis.commands.base import examples_text
from analysis.errors import AnalysisError

PROG = "python -m analysis"


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (2 for a user error, printed as one line on stderr)."""
    args = build_parser().parse_args(argv)
    alt.data_transformers.disable_max_rows()  # a study's curves easily exceed Altair's 5000-row guard
    try:
        output = args.run(args)
        written = save(output.files, args.out) if args.out else []
    except AnalysisError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return _print("\n".join([output.text, *(f"wrote {path}" for path in written)]))


def _print(text: str) -> int:
    try:
        print(text)
    except BrokenPipeError:  # e.g. `| head`: stop quietly, and keep Python from failing at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage mistakes also become one line `error: ...` and exit code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser(commands: tuple[Command, ...] = COMMANDS) -> argparse.ArgumentParser:
    """The `python -m analysis` parser: one subcommand per declared command, each with its run as
    the `run` default, and every command's examples in the help."""
    examples = [line for command in commands for line in command.example_lines(PROG)]
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[1], epilog=examples_text(examples),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands:
        command.add_to(subparsers, PROG)
    return parser


def save(files: dict[str, str | alt.TopLevelMixin], out: Path) -> list[Path]:
    """Write `files` under `out` (created): text as is, charts as HTML (self-contained) or PNG."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            _write(out / name, content)
    except OSError as error:
        raise AnalysisError(f"cannot write to {out}: {error}") from error
    return [out / name for name in files]


def _write(path: Path, content: str | alt.TopLevelMixin) -> None:
    if isinstance(content, str):
        path.write_text(content + "\n")
    elif path.suffix == ".png":
        content.save(path, scale_factor=2)
    else:
        content.save(path, inline=True)
