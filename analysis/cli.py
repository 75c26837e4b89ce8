"""Command line: `python -m analysis COMMAND STUDY... [options]`.

Each command prints a table in --format (text by default) and, with --out DIR, also writes its
tables as CSV, Markdown and LaTeX and its chart as HTML and PNG. Errors a user can fix (no
results, unknown column, test set or baseline, a filter matching nothing) print one line
`error: ...` on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from analysis.charts import (
    curves_chart,
    compared_rows,
    frontier_panels,
    fronts_left_out,
    improvement_chart,
    lr_sensitivity_chart,
    performance_profile_chart,
    title,
)
from analysis.columns import present
from analysis.energy_profile import (
    at_chosen_lrs,
    curve_lengths,
    energy_profile_chart,
    energy_profiles,
    profile_summary,
    profile_test_set,
)
from analysis.errors import AnalysisError
from analysis.frontier import pareto_front
from analysis.load import load, select
from analysis.properties import (
    FREQUENCY_PROPERTIES,
    frequency_error_chart,
    md_survival_chart,
    property_table,
    ranking_agreement,
    rmse_property_chart,
    rmse_property_front,
)
from analysis.recommend import chosen_lr_line
from analysis.render import FORMATS, MARK_LEGEND, format_summary, render
from analysis.report import report_html
from analysis.sql import sql
from analysis.stats import (
    LR_CHOICES,
    STABLE_TAU,
    TARGET_FACTOR,
    chosen_lrs,
    paired_comparison,
    performance_profiles,
    performance_ratios,
    profile_scores,
    rank_stability,
    rank_summary,
    ranking_is_stable,
    seed_ranks,
    seeds_needed,
    target_summary,
    time_to_target,
)
from analysis.tables import (
    TABLE_METRICS,
    VALIDATION_CURVES,
    curve_summary,
    improvement_vs,
    lbfgs_gain,
    ok_rows,
    summary_table,
    table_metrics,
    validation_curve,
    with_total_wall_time,
)
from analysis.verdicts import verdict_note

FILE_FORMATS = {"csv": "csv", "markdown": "md", "latex": "tex"}
FILTERS = ("stage", "optimizer", "lr", "test_set")
IDENTITY = ("study", "trial_id", "optimizer", "lr", "seed", "stage", "test_set")
EXAMPLES = """examples:
  python -m analysis frontier storage/my_study --test-set 1200K --out figures/
  python -m analysis table storage/my_study --lr 1e-3 --format markdown
  python -m analysis table 'storage/*' --by optimizer,lr --stage lbfgs
  python -m analysis improvement storage/my_study --baseline adam --test-set 300K,1200K
  python -m analysis lbfgs storage/my_study
  python -m analysis curves storage/my_study --optimizer adam,lamb --out figures/
  python -m analysis sql storage/my_study -q "SELECT optimizer, count(*) FROM scores GROUP BY 1"
  python -m analysis compare storage/my_study --baseline adam --test-set 1200K
  python -m analysis ranks storage/my_study
  python -m analysis time-to-target storage/my_study --target 25
  python -m analysis profiles 'storage/*' --out figures/
  python -m analysis curves storage/my_study --x wall
  python -m analysis report storage/my_study --out storage/my_study/report
"""


@dataclass
class Output:
    """What a command produced: text for the terminal, and files for --out (name -> text or chart)."""

    text: str
    files: dict[str, str | alt.TopLevelMixin] = field(default_factory=dict)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (2 for a user error, printed as one line on stderr)."""
    args = build_parser().parse_args(argv)
    alt.data_transformers.disable_max_rows()  # a study's curves easily exceed Altair's 5000-row guard
    try:
        output = COMMANDS[args.command](args)
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


def frontier(args: argparse.Namespace) -> Output:
    scores = _load(args, "scores", skip=("stage",))  # parents of L-BFGS rows, for their total wall time
    if "total_wall_time_s" in (args.x, args.y):
        scores = with_total_wall_time(scores)
    scores = ok_rows(select(scores, stage=args.stage))
    measured = compared_rows(scores, args.y)
    front = pd.concat([pareto_front(rows, [args.x, args.y]).sort_values([args.x, args.y])
                       for _, rows in measured.groupby("test_set", sort=False)])
    rows = front[[*present(front, IDENTITY), args.x, args.y]]
    panels = front["test_set"].nunique()
    heading = (f"Pareto front{'s, one per test set' if panels > 1 else ''}: {len(front)} of {len(measured)} rows, "
               f"minimising {args.x} and {args.y}")
    chart = frontier_panels(scores, args.x, args.y, log_x=args.log_x, log_y=args.log_y)
    return Output(_sections(args.format, [(heading, rows)], fronts_left_out(scores, args.y)),
                  {**_table_files("frontier", rows), **_chart_files("frontier", chart)})


def table(args: argparse.Namespace) -> Output:
    scores = _load(args, "scores")
    metrics = args.metric or table_metrics(scores)
    return _summary_output(summary_table(scores, metrics, by=args.by), metrics, args.by, args, "table")


def _summary_output(summary: pd.DataFrame, metrics: list[str], by: list[str], args: argparse.Namespace,
                    stem: str) -> Output:
    """The tidy summary as CSV, and per metric the marked optimizer x test set table as text, md and tex."""
    files = {f"{stem}.csv": render(summary, "csv")}
    sections = []
    for metric in metrics:
        wide = functools.partial(format_summary, summary, metric, by=by, digits=args.digits)
        files |= {f"{stem}_{metric}.{FILE_FORMATS[fmt]}": render(wide(fmt=fmt), fmt) for fmt in ("markdown", "latex")}
        heading = f"{title(metric)}: mean (std) over seeds; {MARK_LEGEND[args.format]}"
        sections.append(_titled(heading, render(wide(fmt=args.format), args.format), args.format))
    return Output(files[f"{stem}.csv"] if args.format == "csv" else "\n\n".join(sections), files)


def improvement(args: argparse.Namespace) -> Output:
    relative = improvement_vs(_load(args, "scores"), baseline=args.baseline, metric=args.metric)
    rows = relative[["optimizer", "test_set", "mean", "baseline_mean", "improvement_pct"]]
    heading = f"{title(args.metric)}: improvement over {args.baseline} (%), seed means; positive is better"
    return Output(_titled(heading, render(rows, args.format), args.format),
                  {**_table_files("improvement", rows),
                   **_chart_files("improvement", improvement_chart(relative))})


def lbfgs(args: argparse.Namespace) -> Output:
    gain = lbfgs_gain(_load(args, "scores"), metric=args.metric).drop(columns="metric")
    heading = f"{title(args.metric)}: first order (base) vs after L-BFGS (refined), seed means"
    return Output(_titled(heading, render(gain, args.format), args.format), _table_files("lbfgs", gain))


def curves(args: argparse.Namespace) -> Output:
    data = _load(args, "curves")
    y = args.y or validation_curve(data)
    rows = curve_summary(data, y)
    heading = f"{title(y)} at the last step and at best, per trial"
    return Output(_titled(heading, render(rows, args.format), args.format),
                  {**_table_files("curves", rows),
                   **_chart_files("curves", curves_chart(data, y, x=CURVE_X[args.x], log_y=not args.linear_y))})


def lr_sensitivity(args: argparse.Namespace) -> Output:
    scores, by = _load(args, "scores"), ["optimizer", "lr"]
    output = _summary_output(summary_table(scores, [args.metric], by=by), [args.metric], by, args, "lr")
    output.files |= _chart_files("lr", lr_sensitivity_chart(scores, args.metric))
    return output


def query(args: argparse.Namespace) -> Output:
    result = sql(args.query, *args.studies)
    return Output(render(result, args.format), _table_files("query", result))


def _load(args: argparse.Namespace, table_name: str, skip: tuple[str, ...] = ()) -> pd.DataFrame:
    given = {name: getattr(args, name, None) for name in FILTERS if name not in skip}
    filters = {name: value for name, value in given.items() if value is not None}
    return load(*args.studies, table=table_name, **filters)


def _titled(heading: str, text: str, fmt: str) -> str:
    prefix = {"text": "", "markdown": "", "latex": "% ", "csv": None}[fmt]
    return text if prefix is None else f"{prefix}{heading}\n{text}"


def _table_files(name: str, frame: pd.DataFrame) -> dict[str, str]:
    return {f"{name}.{ext}": render(frame, fmt) for fmt, ext in FILE_FORMATS.items()}


def _chart_files(name: str, chart: alt.TopLevelMixin) -> dict[str, alt.TopLevelMixin]:
    return {f"{name}.html": chart, f"{name}.png": chart}


def energy_profile(args: argparse.Namespace) -> Output:
    scores = _load(args, "scores", skip=("test_set",))  # the validation rows choose each optimizer's lr
    test_set = profile_test_set(scores, args.test_set)
    rows = select(scores, test_set=test_set)
    summary, profiles = profile_summary(rows), energy_profiles(rows)
    shown, choice = (profiles, "") if args.all_lrs or args.lr else at_chosen_lrs(profiles, scores)
    heading = f"Energy profile of {test_set}: relative-energy errors (meV), mean over seeds"
    note = f"curves: {curve_lengths(profiles)}" + (f"; chart: {choice}" if choice else "")
    return Output(_sections(args.format, [(heading, summary)], note),
                  {**_table_files("energy_profile", summary),
                   **_chart_files("energy_profile", energy_profile_chart(shown, subtitle=choice))})


def properties(args: argparse.Namespace) -> Output:
    """optimizer x property, mean (std) over seeds, the two closest to the reference marked; with
    --property, whether the force-RMSE ranking and that property's agree, and their front."""
    rows = _load(args, "properties")
    table = property_table(rows, quantity=args.quantity, fmt=args.format)
    heading = (f"Physical properties: {args.quantity}, mean (std) over seeds; {MARK_LEGEND[args.format]} "
               "(closest to the reference)")
    sections, files = [(heading, table)], _table_files("properties", table)
    present_properties = set(rows["property"])
    for name, build, needs in (("md_survival", md_survival_chart, {"md_survival_time"}),
                               ("frequency_error", frequency_error_chart, set(FREQUENCY_PROPERTIES))):
        if needs & present_properties:
            files |= _chart_files(name, build(rows))
    if args.property:
        scores = _load(args, "scores")
        rho = ranking_agreement(rows, scores, args.property, test_set=args.rmse_test_set)
        front = rmse_property_front(rows, scores, args.property, test_set=args.rmse_test_set)
        sections.append((f"Force RMSE on {args.rmse_test_set} vs |error| of {args.property}: Pareto front; "
                         f"Spearman's rho of the two rankings over optimizers {rho:.2f}", front))
        files |= _chart_files("rmse_vs_property",
                              rmse_property_chart(rows, scores, args.property, test_set=args.rmse_test_set))
    return Output(_sections(args.format, sections), files)


COMMANDS = {"frontier": frontier, "table": table, "improvement": improvement, "lbfgs": lbfgs,
            "curves": curves, "lr": lr_sensitivity, "sql": query, "energy-profile": energy_profile,
            "properties": properties}


class _Parser(argparse.ArgumentParser):
    """Usage mistakes also become one line `error: ...` and exit code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `python -m analysis` parser: one subcommand per table or chart."""
    parser = _Parser(prog="python -m analysis", description=__doc__.split("\n\n")[1], epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _frontier_parser(commands)
    _table_parser(commands)
    _improvement_parser(commands)
    _lbfgs_parser(commands)
    _curves_parser(commands)
    _lr_parser(commands)
    _sql_parser(commands)
    _verdict_parsers(commands)
    _energy_profile_parser(commands)
    _properties_parser(commands)
    _report_parser(commands)
    return parser


def _properties_parser(commands) -> None:
    p = _command(commands, "properties", "physical properties of the models (an evaluate stage): optimizer x "
                 "property, MD survival and frequency-error charts, RMSE vs a property")
    _add_filters(p, stage=None, with_test_set=False)
    p.add_argument("--quantity", choices=("value", "abs_error", "error"), default="value",
                   help="what the table shows (default: %(default)s); marks go to the closest to the reference")
    p.add_argument("--property", help="also compare the force-RMSE ranking with this property's, e.g. "
                   "vib_frequency_mae")
    p.add_argument("--rmse-test-set", default="val", help="the scores' test set for --property (default: %(default)s)")


def _energy_profile_parser(commands) -> None:
    p = _command(commands, "energy-profile", "a path or scan: predicted vs reference relative energies per curve, "
                 "and their errors per optimizer")
    _add_filters(p, stage="first_order")
    p.add_argument("--all-lrs", action="store_true", help="chart every learning rate, one panel each (default: "
                   "each optimizer at its lr with the lowest validation error; --lr picks lrs)")


def _frontier_parser(commands) -> None:
    p = _command(commands, "frontier", "Pareto front of error vs cost on one test set (paper Fig. 6)")
    _add_filters(p, stage="first_order")
    p.add_argument("--x", default="wall_time_s", help="cost column, minimised (default: %(default)s, per stage; "
                   "total_wall_time_s adds an L-BFGS trial's first-order time)")
    p.add_argument("--y", default="force_rmse_mev_a", help="error column, minimised (default: %(default)s)")
    p.add_argument("--log-x", action="store_true", help="log scale for x in the chart")
    p.add_argument("--log-y", action="store_true", help="log scale for y in the chart")


def _table_parser(commands) -> None:
    p = _command(commands, "table", "optimizer x test set, mean (std) over seeds, best two marked (Tables 1, 2, C1)")
    _add_filters(p, stage="first_order")
    p.add_argument("--metric", type=_names, help="comma-separated metric columns (default: those of "
                   f"{', '.join(TABLE_METRICS)} the study holds)")
    p.add_argument("--by", type=_names, default=["optimizer"],
                   help="comma-separated row keys, e.g. optimizer,lr for the learning-rate ablation")
    p.add_argument("--digits", type=_digits, default=2, help="decimals shown (default: %(default)s)")


def _improvement_parser(commands) -> None:
    p = _command(commands, "improvement", "relative improvement (%%) over a baseline optimizer per test set")
    _add_filters(p, stage="first_order")
    p.add_argument("--baseline", default="adam", help="baseline optimizer (default: %(default)s)")
    p.add_argument("--metric", default="force_rmse_mev_a", help="metric column (default: %(default)s)")


def _lbfgs_parser(commands) -> None:
    p = _command(commands, "lbfgs", "first-order result vs after L-BFGS refinement (Table 3)")
    _add_filters(p, stage=None, with_stage=False)
    p.add_argument("--metric", default="force_rmse_mev_a", help="metric column (default: %(default)s)")


def _curves_parser(commands) -> None:
    p = _command(commands, "curves", "learning curves per trial, coloured by optimizer")
    _add_filters(p, stage=None, with_test_set=False)
    p.add_argument("--y", help="curve column (default: val_force_rmse_mev_a, or val_energy_rmse_mev_atom where "
                   "the validation set has no forces)")
    p.add_argument("--linear-y", action="store_true", help="linear instead of log y axis in the chart")
    p.add_argument("--x", choices=CURVE_X, default="step",
                   help="chart x axis: step (epoch or L-BFGS iteration) or wall (seconds since the trial started)")


def _lr_parser(commands) -> None:
    p = _command(commands, "lr", "learning-rate sensitivity: metric vs lr per optimizer, mean (std) over seeds")
    _add_filters(p, stage="first_order")
    p.add_argument("--metric", default="force_rmse_mev_a", help="metric column (default: %(default)s)")
    p.add_argument("--digits", type=_digits, default=2, help="decimals shown (default: %(default)s)")


def _sql_parser(commands) -> None:
    p = _command(commands, "sql", "SQL over DuckDB views `scores` and `curves` of the studies")
    p.add_argument("-q", "--query", required=True, help="e.g. \"SELECT optimizer, avg(force_rmse_mev_a) "
                                                         "FROM scores GROUP BY 1\"")


def _command(commands, name: str, help_text: str) -> argparse.ArgumentParser:
    p = commands.add_parser(name, help=help_text, description=help_text)
    p.add_argument("studies", nargs="+", metavar="STUDY",
                   help="study folder, its results/ folder, a .parquet file, or a glob pattern of these")
    p.add_argument("--format", choices=FORMATS, default="text", help="terminal output format (default: text)")
    p.add_argument("--out", type=Path, metavar="DIR", help="also write tables (csv, md, tex) and charts (html, png)")
    return p


def _add_filters(p: argparse.ArgumentParser, stage: str | None, with_stage: bool = True,
                 with_test_set: bool = True) -> None:
    if with_stage:
        p.add_argument("--stage", type=_names, default=[stage] if stage else None,
                       help=f"first_order, lbfgs or both, comma-separated (default: {stage or 'all'})")
    p.add_argument("--optimizer", type=_names, help="only these optimizers, comma-separated")
    p.add_argument("--lr", type=_numbers, help="only these learning rates, comma-separated")
    if with_test_set:
        p.add_argument("--test-set", type=_names, help="only these test sets, comma-separated (e.g. 1200K)")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _numbers(text: str) -> list[float]:
    try:
        return [float(value) for value in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None


def _digits(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a number of decimals (0, 1, 2, ...): {text!r}")
    return int(text)


# Verdicts with confidence (issue 33): paired comparisons, rank stability, time-to-target, profiles.
CURVE_X = {"step": "step", "wall": "wall_time_s"}


def compare(args: argparse.Namespace) -> Output:
    scores = _load(args, "scores")
    choice = _lr_choice(args)
    rows = paired_comparison(scores, baseline=args.baseline, metric=args.metric, lr_choice=choice).drop(
        columns="metric")
    best = seeds_needed(scores, args.metric, lr_choice=choice)
    heading = (f"{title(args.metric)}: optimizer - baseline over paired seeds (negative: lower error), "
               f"{LR_CHOICES[choice]}")
    sections = [(heading, rows), ("The best two per test set: best - runner-up, and the seeds that would settle "
                                  "the unsettled", best)]
    return Output(_sections(args.format, sections, _chosen_note(scores, choice) + compare_note(rows, best)),
                  {**_table_files("compare", rows), **_table_files("seeds_needed", best)})


def compare_note(rows: pd.DataFrame, best: pd.DataFrame) -> str:
    """How to read `compare`'s two tables (each its own family of comparisons for Holm's correction)."""
    return f"{verdict_note(rows)} The best-two table is a family of its own ({len(best)} of them)."


def _lr_choice(args: argparse.Namespace) -> str:
    """The `LR_CHOICES` key the --by-lr / --each-lr flags select; 'validation' without either."""
    return "same" if getattr(args, "by_lr", False) else "each" if getattr(args, "each_lr", False) else "validation"


def _chosen_note(scores: pd.DataFrame, choice: str) -> str:
    """Which lr validation chose for each optimizer (and where the grid may be too narrow); '' otherwise."""
    return chosen_lr_line(chosen_lrs(scores)) + "\n" if choice == "validation" else ""


def ranks(args: argparse.Namespace) -> Output:
    scores = _load(args, "scores")
    choice = _lr_choice(args)
    seed_rank = seed_ranks(scores, args.metric, lr_choice=choice)
    taus = rank_stability(scores, args.metric, threshold=args.threshold, lr_choice=choice)
    summary = rank_summary(seed_rank)
    stable = ranking_is_stable(taus, args.threshold)
    verdict = (f"ranking {'stable' if stable else 'NOT stable'}: mean Kendall tau {taus['tau'].mean():.2f} over "
               f"{taus['tau'].notna().sum()} seed pairs ({'>=' if stable else '<'} {args.threshold:g}); "
               f"{int((~taus['stable']).sum())} pairs below")
    sections = [(f"{title(args.metric)}: each optimizer's rank over seeds and test sets (1 = lowest error; holds: "
                 f"share at its most frequent rank), {LR_CHOICES[choice]}", summary),
                ("Kendall's tau between two seeds' orderings", taus)]
    return Output(_sections(args.format, sections, _chosen_note(scores, choice) + verdict),
                  {"ranks.csv": render(seed_rank, "csv"), **_table_files("rank_summary", summary),
                   **_table_files("kendall_tau", taus)})


def target_time(args: argparse.Namespace) -> Output:
    data = _load(args, "curves")
    y = args.y or validation_curve(data)
    times = time_to_target(data, target=args.target, y=y)
    summary = target_summary(times)
    targets = ", ".join(f"{value:.2f}" for value in times["target"].unique())
    name, unit = VALIDATION_CURVES[y]
    target = (f"{args.target:g} {unit}" if args.target is not None
              else f"{TARGET_FACTOR:g} x the best final value ({targets} {unit})")
    heading = (f"{name} <= {target}: trials reaching it, median epoch, wall seconds since the "
               "trial started (setup and compile included) and training seconds (neither; NaN for studies that "
               "predate them) (inf: most never did)")
    return Output(_sections(args.format, [(heading, summary)]),
                  {**_table_files("time_to_target", times), **_table_files("time_to_target_summary", summary)})


def profiles(args: argparse.Namespace) -> Output:
    scores = _load(args, "scores")
    choice = _lr_choice(args)
    profile = performance_profiles(scores, args.metric, taus=np.geomspace(1.0, args.max_tau, 101), lr_choice=choice)
    area = profile_scores(profile)
    ratios = performance_ratios(scores, args.metric, lr_choice=choice)
    heading = (f"{title(args.metric)}: performance profile area over {len(ratios)} problems (test set x study), "
               f"tau 1 to {args.max_tau:g} on a log scale; 1 = best on every problem; {LR_CHOICES[choice]}")
    sections = [(heading, area), (f"Ratio to the best seed mean per problem ({LR_CHOICES[choice]})", ratios)]
    return Output(_sections(args.format, sections, _chosen_note(scores, choice).strip()),
                  {"profiles.csv": render(profile, "csv"), **_table_files("profile_scores", area),
                   **_table_files("ratios", ratios), **_chart_files("profiles", performance_profile_chart(profile))})


def _sections(fmt: str, sections: list[tuple[str, pd.DataFrame]], note: str = "") -> str:
    """Titled tables and a closing note in `fmt`; CSV gets the first table alone (machine-readable)."""
    if fmt == "csv":
        return render(sections[0][1], fmt)
    parts = [_titled(heading, render(frame, fmt), fmt) for heading, frame in sections if not frame.empty]
    notes = ["\n".join(("% " if fmt == "latex" else "") + line for line in note.splitlines())] if note else []
    return "\n\n".join([*parts, *notes])


def _verdict_parsers(commands) -> None:
    _compare_parser(commands)
    _ranks_parser(commands)
    _time_to_target_parser(commands)
    _profiles_parser(commands)


def _compare_parser(commands) -> None:
    p = _command(commands, "compare", "paired comparison with a baseline over seeds, each optimizer at its lr chosen "
                 "on validation: difference, range or bootstrap interval, exact sign-flip p with Holm's correction "
                 "and a verdict")
    _add_filters(p, stage="first_order")
    p.add_argument("--baseline", default="adam", help="baseline optimizer (default: %(default)s); with --each-lr an "
                   "optimizer@lr such as adam@0.001")
    p.add_argument("--metric", default="force_rmse_mev_a", help="metric column, lower is better (default: %(default)s)")
    _add_lr_choice(p, "by_lr", "each_lr")


def _add_lr_choice(p: argparse.ArgumentParser, *flags: str) -> None:
    """Mutually exclusive alternatives to choosing each optimizer's lr on validation (`LR_CHOICES`)."""
    group = p.add_mutually_exclusive_group()
    helps = {"by_lr": f"{LR_CHOICES['same']} instead of {LR_CHOICES['validation']}",
             "each_lr": f"{LR_CHOICES['each']} (named optimizer@lr) instead of {LR_CHOICES['validation']}"}
    for flag in flags:
        group.add_argument(f"--{flag.replace('_', '-')}", dest=flag, action="store_true", help=helps[flag])


def _ranks_parser(commands) -> None:
    p = _command(commands, "ranks", "rank stability: ranks per seed and test set, Kendall's tau between seeds, "
                 "each optimizer at its lr chosen on validation")
    _add_filters(p, stage="first_order")
    p.add_argument("--metric", default="force_rmse_mev_a", help="metric column (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=STABLE_TAU,
                   help="mean Kendall tau below which the ranking is flagged unstable (default: %(default)s)")
    _add_lr_choice(p, "by_lr", "each_lr")


def _time_to_target_parser(commands) -> None:
    p = _command(commands, "time-to-target", "first epoch and wall seconds at which validation force RMSE "
                 "(or energy RMSE) reaches a target, per optimizer and lr")
    _add_filters(p, stage="first_order", with_test_set=False)
    p.add_argument("--target", type=float, help=f"in the curve's unit (default: {TARGET_FACTOR:g} x the best final "
                   "value of the study)")
    p.add_argument("--y", choices=VALIDATION_CURVES, help="the validation curve (default: force RMSE, or energy RMSE "
                   "where the validation set has no forces)")


def _profiles_parser(commands) -> None:
    p = _command(commands, "profiles", "performance profiles rho(tau) across test sets and studies, with their "
                 "area score (AlgoPerf), each optimizer at its lr chosen on validation")
    _add_filters(p, stage="first_order")
    p.add_argument("--metric", default="force_rmse_mev_a", help="metric column (default: %(default)s)")
    p.add_argument("--max-tau", type=_above_one, default=2.0, help="largest ratio to the best (default: %(default)s)")
    _add_lr_choice(p, "each_lr")


def _above_one(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 1:
        raise argparse.ArgumentTypeError(f"not a ratio above 1: {text!r}")
    return value


COMMANDS |= {"compare": compare, "ranks": ranks, "time-to-target": target_time, "profiles": profiles}


# The report page (issue 35): one self-contained index.html per study.
def report(args: argparse.Namespace) -> Output:
    return Output(f"report of {args.study}", {"index.html": report_html(args.study)})


def _report_parser(commands) -> None:
    help_text = "one self-contained HTML page of a study: what was run, its tables and interactive charts"
    p = commands.add_parser("report", help=help_text, description=help_text)
    p.add_argument("study", type=Path, metavar="STUDY", help="study folder (with manifest.json and results/)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write index.html into")


COMMANDS |= {"report": report}
