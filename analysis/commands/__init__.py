"""Every `python -m analysis` command, each declared once in a module of its own as `COMMAND =
Command(name, help, arguments, run, examples)` and listed in `COMMANDS`, from which `analysis.cli`
builds the parser, the help's examples and the dispatch.

To add a command: write `analysis/commands/<name>.py` declaring its `COMMAND` and add it to
`COMMANDS` below (the order of `python -m analysis --help`)."""

from analysis.commands import (compare, curves, energy_profile, frontier, improvement, lbfgs, lr, profiles,
                               properties, ranks, report, spectrum, sql, table, time_to_target)
from analysis.commands.base import Command, Output

COMMANDS: tuple[Command, ...] = (
    frontier.COMMAND,
    table.COMMAND,
    improvement.COMMAND,
    lbfgs.COMMAND,
    curves.COMMAND,
    lr.COMMAND,
    sql.COMMAND,
    compare.COMMAND,
    ranks.COMMAND,
    time_to_target.COMMAND,
    profiles.COMMAND,
    energy_profile.COMMAND,
    properties.COMMAND,
    spectrum.COMMAND,
    report.COMMAND,
)

__all__ = ["COMMANDS", "Command", "Output"]
