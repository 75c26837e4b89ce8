"""The report page of a study: one self-contained HTML file to read it in.

`report_html(folder)` reads the study's `manifest.json` and its results and returns the page. It
opens with the answer (`analysis.recommend`: per group of test sets, the optimizer at its learning
rate chosen on validation, its margin over the runner-up in honest words, the seeds that would
settle it); then what was run (space, settings, versions, machine), the summary tables, the Pareto
fronts (on training time, compile time apart, where the rows record it), learning curves (mean and
range over seeds per optimizer at its chosen lr, every trial's line behind a checkbox), lr
sensitivity, the L-BFGS gain, the statistics (each optimizer against the baseline, both at their
lrs chosen on validation) and the physical properties, each where the study has what it needs.
Charts are Altair's, interactive, with Vega, Vega-Lite and vega-embed inlined from vl-convert's
bundle, so the page needs no network. It writes nothing; the CLI and the study launcher do.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import altair as alt
import pandas as pd
import vl_convert

from analysis.charts import (
    HEIGHT,
    WIDTH,
    compared_rows,
    front_metrics,
    frontier_panels,
    lr_sensitivity_chart,
    optimizer_color,
    ordered_optimizers,
    registry_positions,
    title,
)
from analysis.columns import distinct, present, without_reference_sets
from analysis.energy_profile import study_profile_charts
from analysis.errors import AnalysisError
from analysis.load import load, parquet_files, read_parquet, with_context_in_optimizer
from analysis.properties import FREQUENCY_PROPERTIES, MEASURED, frequency_error_chart, md_survival_chart, property_table
from analysis.recommend import ERRORS, first_order, recommendation, recommendation_text
from analysis.render import display_cell, format_summary, with_whole_counts
from analysis.stats import (
    CONTEXT,
    at_chosen_lr,
    chosen_lrs,
    paired_comparison,
    rank_stability,
    rank_summary,
    ranking_is_stable,
    seed_ranks,
    seeds_needed,
)
from analysis.study_summary import at_chosen_lr_or_all, best_lr_found_lines, searched_lrs
from analysis.tables import failed_rows, lbfgs_gain, stopped_cells, summary_table, table_metrics, with_total_wall_time
from analysis.verdicts import counted_words, verdict_counts, verdict_note
from analysis.zero_shot import zero_shot_lines

BASELINE = "adam"
BEFORE_TUNING = "replay_before"  # the foundation's score before fine-tuning: the same for every trial
MACHINE = ("host", "device", "device_name", "torch_threads")
VALIDATION_CURVES = ("val_force_rmse_mev_a", "val_energy_rmse_mev_atom")  # the first the curves hold is drawn
SPACE_KEYS = ("name", "description", "optimizers", "lrs", "seeds", "methods", "stages", "search", "num_samples",
              "fixed", "hyper", "method_settings", "lbfgs")
METHOD_COST = ("trainable_params", "training_state_mb", "peak_memory_mb", "step_time_ms")  # finetune.run_cost
RUN_KEYS = ("study", "started", "finished", "wall_time_s", "setup_s", "git_revision", "user")
# vega-embed's menu offers PNG/SVG export; its editor and source links would need the network.
EMBED_OPTIONS = {"renderer": "svg", "actions": {"export": True, "source": False, "compiled": False,
                                                "editor": False}}


@dataclass
class Page:
    """Sections (anchor, heading, HTML) and the Vega-Lite specs of the charts they place (div `chart-<i>`)."""

    sections: list[tuple[str, str, str]] = field(default_factory=list)
    specs: list[dict] = field(default_factory=list)

    def chart(self, chart: alt.TopLevelMixin, caption: str) -> str:
        """A placeholder for `chart`, rendered in the browser, with its caption."""
        with alt.data_transformers.disable_max_rows():  # a study's curves easily exceed 5000 rows
            self.specs.append(chart.to_dict())
        return f'<figure><div class="chart" id="chart-{len(self.specs) - 1}"></div>' \
               f"<figcaption>{html.escape(caption)}</figcaption></figure>"

    def add(self, heading: str, *parts: str) -> None:
        anchor = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
        self.sections.append((anchor, heading, "".join(parts)))


def report_html(study_folder: str | Path) -> str:
    """The report page of the study in `study_folder` (its manifest and results), as one HTML string."""
    folder = Path(study_folder)
    manifest = read_manifest(folder)
    scores = load(folder, table="scores")
    files = parquet_files(folder, table="curves", missing_ok=True)
    curves = with_context_in_optimizer(read_parquet(files)) if files else None  # named as `load` names the scores
    name = manifest.get("study") or manifest.get("name") or folder.name
    page = Page()
    page.add("Recommendation", recommendation_part(scores) + zero_shot_part(scores))
    page.add("What was run", *run_parts(manifest, scores))
    ok = without_reference_sets(scores[scores["status"] == "ok"])
    if ok.empty:
        page.add("Results", "<p>No trial finished with status ok: no tables or charts.</p>")
    else:
        add_results(page, scores, ok, curves)
    if parquet_files(folder, table="properties", missing_ok=True):  # a study with an evaluate stage
        page.add("Physical properties", *properties_parts(page, load(folder, table="properties")))
    return document(name, headline(scores, manifest), page)


def read_manifest(folder: Path) -> dict:
    """The study's manifest.json ({} where there is none); raises for one that is not JSON."""
    path = folder / "manifest.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise AnalysisError(f"cannot read {path}: {error}") from error


def add_results(page: Page, scores: pd.DataFrame, ok: pd.DataFrame, curves: pd.DataFrame | None) -> None:
    """The sections built from the 'ok' rows (`ok`, without the score before fine-tuning)."""
    # Charts colour optimizers in order of appearance: registry order, as in the tables.
    order = ordered_optimizers(scores)
    scores, ok = ordered(scores, order), ordered(ok, order)
    curves = None if curves is None else ordered(curves, order)
    first = ok[ok["stage"] == "first_order"]
    page.add("Summary tables", *summary_parts(scores))
    page.add("Pareto fronts", frontier_part(page, ok), compile_part(ok), method_cost_part(ok))
    if profiled := study_profile_charts(scores[scores["stage"] == "first_order"]):
        page.add("Energy profiles", *(page.chart(chart, caption) for chart, caption in profiled))
    if curves is not None and not first.empty and (y := validation_curve(curves)):
        chosen = at_chosen_lr(first_order(curves), chosen_lrs(first_order(scores)))
        page.add("Learning curves", *curve_parts(page, chosen, y))
    if first["lr"].nunique() > 1:
        page.add("Learning-rate sensitivity", page.chart(lr_panels(first), "Seed mean ± std of the force RMSE "
                                                         "against the learning rate, per test set."))
    if (ok["stage"] == "lbfgs").any():
        page.add("L-BFGS gain", *lbfgs_parts(scores))
    if first["seed"].nunique() > 1 and first["optimizer"].nunique() > 1:
        page.add("Statistics", *statistics_parts(scores[scores["stage"] == "first_order"]))


def recommendation_part(scores: pd.DataFrame) -> str:
    """`recommendation_text` as a list, its numbers folded away; or why there is none."""
    try:
        table = recommendation(scores)
    except AnalysisError as error:
        return f'<p class="note">No recommendation: {html.escape(str(error))}</p>'
    lead, *lines, _ = recommendation_text(table)  # the last line: the terminal's short verdict note
    items: list[str] = []
    for line in lines:  # a group's line ('- '), or the grid note under it
        if line.startswith("- "):
            items.append(html.escape(line[2:]))
        else:
            items[-1] += f'<br><span class="note">{html.escape(line.strip())}</span>'
    return (f"<p>{html.escape(lead)}</p><ul>{''.join(f'<li>{item}</li>' for item in items)}</ul>"
            f'<p class="note">{html.escape(verdict_note(table))}</p>'
            f"<details><summary>the numbers</summary>{html_table(table)}</details>")


def zero_shot_part(scores: pd.DataFrame) -> str:
    """The zero-shot check (`analysis.zero_shot`): the foundation's validation errors before
    fine-tuning, and the warning when its energy reference is not the data's; "" without them."""
    lines = zero_shot_lines(scores)
    if not lines:
        return ""
    warning = "".join(f'<p class="warning"><strong>{html.escape(line)}</strong></p>' for line in lines[1:])
    return f"<p>{html.escape(lines[0])}</p>{warning}"


def cost_axis(ok: pd.DataFrame) -> tuple[str, str]:
    """The fronts' cost column and its words: training time (compile time apart) where every row
    records it, else wall time."""
    if "training_time_s" in ok and ok["training_time_s"].notna().all():
        return "training_time_s", "training time (wall time less compiling, which the table below gives apart)"
    return "wall_time_s", "wall time"


def compile_part(ok: pd.DataFrame) -> str:
    """Median compile and training seconds per optimizer (first order), where the rows record them."""
    if cost_axis(ok)[0] != "training_time_s" or "compile_time_s" not in ok:
        return ""
    trials = ok[ok["stage"] == "first_order"].drop_duplicates("trial_id")
    medians = trials.groupby("optimizer", sort=False)[["compile_time_s", "training_time_s"]].median()
    return subsection("Compile time apart: median seconds per trial (first order)", html_table(medians),
                      "Compiling is a one-time cost per process and shape, which a longer run amortises.")


def method_cost_part(ok: pd.DataFrame) -> str:
    """Per fine-tuning method (a space's `methods`), the median cost of a first-order trial."""
    if "method" not in ok or not set(METHOD_COST) & set(ok):
        return ""
    trials = ok[ok["stage"] == "first_order"].drop_duplicates("trial_id")
    medians = trials.groupby("method", sort=False)[present(trials, METHOD_COST)].median()
    return subsection("Cost per method: median per trial (first order)", html_table(medians),
                      "Trainable parameters, MiB of parameters, gradients and optimizer state, the GPU's peak "
                      "allocation (empty on a CPU) and the mean optimizer step in milliseconds.")


def validation_curve(curves: pd.DataFrame) -> str | None:
    """The first of `VALIDATION_CURVES` the curves hold values of (None: neither)."""
    return next((c for c in VALIDATION_CURVES if c in curves and curves[c].notna().any()), None)


def curve_parts(page: Page, curves: pd.DataFrame, y: str) -> list[str]:
    """`curve_band_chart` of `curves` (each optimizer at its chosen lr), one per study, system, mode
    or stage where they vary (a study whose rows name several)."""
    context = [c for c in present(curves, CONTEXT) if curves[c].nunique(dropna=False) > 1]
    groups = curves.groupby(context, sort=False, dropna=False) if context else [((), curves)]
    caption = (f"{title(y)} per optimizer at its learning rate chosen on validation: the mean over seeds (line) and "
               "their range (band); tick 'every trial' for each trial's own line, hover it for the trial.")
    return [page.chart(curve_band_chart(rows, y, ", ".join(f"{c} {v}" for c, v in zip(context, key))), caption)
            for key, rows in groups]


def curve_band_chart(curves: pd.DataFrame, y: str, subtitle: str = "") -> alt.LayerChart:
    """Per optimizer, `y` against the step: the mean over its trials (line) and their range (band),
    every trial's line behind the 'every trial' checkbox. `curves`: one lr per optimizer."""
    data = curves.dropna(subset=[y])
    names, positions = ordered_optimizers(data), registry_positions(data)
    color = alt.Color("optimizer:N", sort=names, title="optimizer",
                      scale=alt.Scale(domain=names, range=[optimizer_color(n, names, positions) for n in names]))
    band = data.groupby(["optimizer", "lr", "step"], sort=False)[y].agg(
        mean="mean", low="min", high="max", seeds="count").reset_index()
    x, scale = alt.X("step:Q", title=title("step"), axis=alt.Axis(tickMinStep=1)), alt.Scale(type="log")
    every = alt.param(name="every_trial", value=False, bind=alt.binding_checkbox(name="every trial "))
    ranges = alt.Chart(band).mark_area(opacity=0.2).encode(x=x, y=alt.Y("low:Q", scale=scale), y2="high:Q",
                                                           color=color)
    means = alt.Chart(band).mark_line(strokeWidth=2.5).encode(
        x=x, y=alt.Y("mean:Q", title=title(y), scale=scale), color=color,
        tooltip=["optimizer", "lr", "step", "mean", "low", "high", "seeds"])
    identity = present(data, ("trial_id", "optimizer", "lr", "seed"))
    # hidden by opacity, not filtered out: an empty layer gives Vega an infinite extent for `step`
    trials = alt.Chart(data[[*identity, "step", y]]).mark_line(strokeWidth=1).encode(
        x=x, y=alt.Y(f"{y}:Q", scale=scale), color=color, detail="trial_id:N", tooltip=[*identity, "step", y],
        opacity=alt.condition(every, alt.value(0.6), alt.value(0.0)))
    heading = alt.Title(title(y), subtitle=subtitle) if subtitle else title(y)
    return alt.layer(ranges, means, trials).add_params(every).properties(title=heading, width=WIDTH, height=HEIGHT)


def frontier_part(page: Page, ok: pd.DataFrame) -> str:
    """Error against cost per test set, force RMSE where it has forces, else energy RMSE; with L-BFGS
    trials, their cost includes their parent's."""
    if (ok["stage"] == "lbfgs").any():
        rows, x = with_total_wall_time(ok), "total_wall_time_s"
        cost = "wall time (an L-BFGS trial's plus its first-order parent's)"
    else:
        rows, (x, cost) = ok, cost_axis(ok)
    return "".join(page.chart(frontier_panels(rows[rows["test_set"].isin(test_sets)], x, metric),
                              f"Each trial's {title(metric)} against its {cost}, one panel per test set; the dashed "
                              "line is the Pareto front (both minimised). Hover a point for its trial.")
                   for metric, test_sets in front_metrics(ok).items())


def ordered(rows: pd.DataFrame, optimizers: list[str]) -> pd.DataFrame:
    """`rows` with optimizers in the order of `optimizers` (others last) and learning rates from large to small."""
    rank = {name: i for i, name in enumerate(optimizers)}
    return rows.sort_values(["optimizer", "lr"], kind="stable",
                            key=lambda c: c.map(rank).fillna(len(rank)) if c.name == "optimizer" else -c)


def headline(scores: pd.DataFrame, manifest: dict) -> str:
    trials = scores.drop_duplicates(["trial_id", "stage"])
    stages = ", ".join(f"{n} {stage}" for stage, n in trials["stage"].value_counts(sort=False).items())
    statuses = ", ".join(f"{n} {status}" for status, n in trials["status"].value_counts().items())
    wall = f", wall time {manifest['wall_time_s']:.0f} s" if "wall_time_s" in manifest else ""
    return f"{len(trials)} trials ({stages}): {statuses}{wall}"


def run_parts(manifest: dict, scores: pd.DataFrame) -> list[str]:
    """Space, run, machine, versions, failures and settings."""
    parts = [subsection("Search space", key_value_table(pick(manifest.get("space", {}), SPACE_KEYS))),
             subsection("Run", key_value_table(pick(manifest, RUN_KEYS)))]
    if machine := present(scores, MACHINE):
        trials = scores.drop_duplicates(["trial_id", "stage"])[machine].astype("string").fillna("not recorded")
        counts = trials.groupby(machine).size().rename("trials")
        parts.append(subsection("Machine (trials per host and device)", html_table(counts.reset_index())))
    parts.append(subsection("Versions", key_value_table(versions(manifest, scores))))
    failed = failed_rows(scores).drop_duplicates(["trial_id", "stage"])
    if not failed.empty:
        columns = present(failed, ("trial_id", "stage", "optimizer", "lr", "seed", "status", "error"))
        parts.append(subsection(f"Trials not ok ({len(failed)})", html_table(failed[columns])))
    if not (stopped := stopped_cells(scores)).empty:
        parts.append(subsection(f"Cells stopped early by the adaptive study ({len(stopped)}): no scores, "
                                "neither finished nor failed", html_table(stopped)))
    if settings := {k: v for k, v in manifest.get("config", {}).items() if v not in (None, {}, [])}:
        parts.append(f"<details><summary>All settings ({len(settings)})</summary>{key_value_table(settings)}</details>")
    return parts


def versions(manifest: dict, scores: pd.DataFrame) -> dict[str, str]:
    """Package versions: the manifest's (the launching process), then the rows' (each trial's
    process), all values where trials differ."""
    found = {name: str(version) for name, version in manifest.get("versions", {}).items()}
    for column in [c for c in scores.columns if c.startswith("version_") or c == "python"]:
        found[column.removeprefix("version_")] = ", ".join(map(str, distinct(scores[column].dropna())))
    return {name: version for name, version in found.items() if version}


def summary_parts(scores: pd.DataFrame) -> list[str]:
    """Per stage and metric, optimizer (x lr) x test set: mean (std) over seeds, best two marked."""
    searched = searched_lrs(scores)  # a search's tables: each optimizer at its lr chosen on validation
    parts = [f"<p>{html.escape(line)}</p>" for line in best_lr_found_lines(scores, searched) if line]
    for stage, rows in scores.groupby("stage", sort=False):
        if not (rows["status"] == "ok").any():
            continue
        rows = at_chosen_lr_or_all(rows, scores) if searched else rows
        by = ["optimizer", "lr"] if rows["lr"].nunique() > 1 and not searched else ["optimizer"]
        metrics = table_metrics(rows)
        summary = summary_table(rows, metrics, by=by)
        for metric in metrics:
            heading = f"{title(metric)}, stage {stage}: mean (std) over seeds; bold: best, italics: second best"
            parts.append(subsection(heading, html_table(format_summary(summary, metric, by=by, fmt="markdown"))))
    return parts


def lr_panels(first: pd.DataFrame) -> alt.TopLevelMixin:
    """`lr_sensitivity_chart` per test set, three per row (one facet row of many test sets is too wide)."""
    charts = [lr_sensitivity_chart(rows).properties(title=f"{title('force_rmse_mev_a')} on {test_set}")
              for test_set, rows in compared_rows(first, "force_rmse_mev_a").groupby("test_set", sort=False)]
    return charts[0] if len(charts) == 1 else alt.concat(*charts, columns=3)


def lbfgs_parts(scores: pd.DataFrame) -> list[str]:
    gain = lbfgs_gain(scores[scores["test_set"] != BEFORE_TUNING]).drop(columns="metric")
    heading = f"{title('force_rmse_mev_a')}: first order (base) vs after L-BFGS (refined), seed means"
    return [subsection(heading, html_table(gain))]


def statistics_parts(first: pd.DataFrame) -> list[str]:
    """At each optimizer's lr chosen on validation (`first`: the first-order rows, every status):
    each against the baseline (where the study ran it), the best two per test set, and the
    stability of the ranking; on force RMSE, or energy RMSE where no test set has forces."""
    metric = next((m for m in ERRORS if m in first and first[m].notna().any()), ERRORS[0])
    parts = []
    try:
        if BASELINE in set(first["optimizer"]):
            table = paired_comparison(first, baseline=BASELINE, metric=metric).drop(columns="metric")
            counts = verdict_counts(table)
            parts += [subsection(f"{title(metric)}: verdicts against {BASELINE}, each at its lr chosen on validation "
                                 f"({counted_words(counts)}, over test sets)", html_table(counts)),
                      subsection(f"{title(metric)}: compared with {BASELINE}", collapsed(html_table(table), len(table)),
                                 verdict_note(table))]
        best = seeds_needed(first, metric)
        parts.append(subsection(f"{title(metric)}: the best two per test set (best - runner-up)",
                                collapsed(html_table(best), len(best)), verdict_note(best)))
        taus = rank_stability(first, metric)
        verdict = (f"Ranking {'stable' if ranking_is_stable(taus) else 'NOT stable'}: mean Kendall tau "
                   f"{taus['tau'].mean():.2f} over {taus['tau'].notna().sum()} seed pairs.")
        parts.append(subsection(f"{title(metric)}: ranks over seeds and test sets (1 = lowest error), each optimizer "
                                "at its lr chosen on validation", html_table(rank_summary(seed_ranks(first, metric))),
                                verdict))
    except AnalysisError as error:  # e.g. no test set besides the validation set that chose the lrs
        parts.append(f'<p class="note">{html.escape(str(error))}</p>')
    return parts


def collapsed(body: str, rows: int, longest: int = 30) -> str:
    """`body` folded away (click to show) where it has more than `longest` rows."""
    return body if rows <= longest else f"<details><summary>all {rows} rows</summary>{body}</details>"


def properties_parts(page: Page, properties: pd.DataFrame) -> list[str]:
    """The optimizer x property table, and the MD survival and frequency-error charts where measured."""
    measured = properties[properties["status"].isin(MEASURED) & properties["value"].notna()]
    if measured.empty:
        return ['<p class="note">No property was measured (statuses: '
                f"{html.escape(', '.join(map(str, distinct(properties['status']))))}).</p>"]
    heading = "Properties: mean (std) over seeds; bold: closest to the reference, italics: second closest"
    parts = [subsection(heading, html_table(property_table(properties, fmt="markdown")),
                        "[k/n]: measured on k of the n seeds evaluated; -: on none.")]
    if (measured["property"] == "md_survival_time").any():
        parts.append(page.chart(md_survival_chart(properties), "MD survival time per model; hollow: unstable."))
    if measured["property"].isin(FREQUENCY_PROPERTIES).any():
        parts.append(page.chart(frequency_error_chart(properties), "Frequency errors per model and their mean."))
    return parts


def pick(mapping: dict, keys: Iterable[str]) -> dict:
    return {key: mapping[key] for key in keys if mapping.get(key) not in (None, {}, [], "")}


def subsection(heading: str, body: str, note: str = "") -> str:
    note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return f"<h3>{html.escape(heading)}</h3>{body}{note_html}"


def key_value_table(mapping: dict) -> str:
    if not mapping:
        return '<p class="note">not recorded</p>'
    rows = "".join(f'<tr><th scope="row">{html.escape(str(key))}</th><td class="text">{html.escape(value_text(value))}'
                   "</td></tr>" for key, value in mapping.items())
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def value_text(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={value_text(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(value_text, value))
    return display_cell(value) if isinstance(value, float) else str(value)


def html_table(frame: pd.DataFrame) -> str:
    """`frame` as an HTML table (a named index becomes the leading columns); Markdown marks of
    `format_summary` cells become bold and italics, numbers are right-aligned."""
    table = with_whole_counts(frame.reset_index() if any(name is not None for name in frame.index.names) else frame)
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in table.columns)
    body = "".join("<tr>" + "".join(map(html_cell, row)) + "</tr>" for row in table.itertuples(index=False))
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def html_cell(value) -> str:
    text = html.escape(display_cell(value))
    marked = re.sub(r"^\*\*(.+)\*\*$", r"<b>\1</b>", text)
    marked = re.sub(r"^\*(.+)\*$", r"<i>\1</i>", marked)
    numeric = re.fullmatch(r"[-+0-9.e() infa\[/\]]+", re.sub(r"</?[bi]>", "", marked)) and text not in ("nan", "")
    return f'<td class="{"num" if numeric else "text"}">{marked}</td>'


def document(name: str, headline_text: str, page: Page) -> str:
    """The page: styles, the sections, the Vega bundle and one vegaEmbed per chart."""
    nav = "".join(f'<a href="#{anchor}">{html.escape(heading)}</a>' for anchor, heading, _ in page.sections)
    sections = "".join(f'<section id="{anchor}"><h2>{html.escape(heading)}</h2>{body}</section>'
                       for anchor, heading, body in page.sections)
    specs = json.dumps(page.specs).replace("</", "<\\/")  # no '</script>' inside the script
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Study {html.escape(name)}</title>
<style>{STYLE}</style>
<script>{vl_convert.javascript_bundle(vl_version=vl_version())}</script></head>
<body><header><h1>Study {html.escape(name)}</h1><p>{html.escape(headline_text)}</p><nav>{nav}</nav></header>
<main>{sections}</main>
<script>{EMBED_SCRIPT % (specs, json.dumps(EMBED_OPTIONS))}</script></body></html>
"""


def vl_version() -> str:
    """Altair's Vega-Lite version as vl-convert names it ('6.4' for schema v6.4.1)."""
    return ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


# Each chart's failure is shown in its place and logged; <body data-charts="n"> once all are drawn.
EMBED_SCRIPT = """
const specs = %s, options = %s;
Promise.all(specs.map((spec, i) => vegaEmbed("#chart-" + i, spec, options).catch(error => {
  document.getElementById("chart-" + i).textContent = "chart failed: " + error;
  console.error("chart " + i + " failed: " + error);
  throw error;
}))).then(views => { document.body.dataset.charts = views.length; });
"""

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0; }
header { background: #f4f6f8; border-bottom: 1px solid #dde; padding: 16px 32px 8px; }
h1 { margin: 0 0 4px; font-size: 24px; }
nav a { margin-right: 16px; color: #2b5d9c; text-decoration: none; }
main { padding: 0 32px 48px; max-width: 1280px; }
h2 { margin-top: 32px; border-bottom: 2px solid #4c78a8; padding-bottom: 2px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
.table { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e3e3e3; }
thead th { border-bottom: 2px solid #999; text-align: left; }
td.num { text-align: right; } td.text, table.kv th { text-align: left; }
table.kv th { font-weight: 600; color: #444; }
.note { color: #555; font-size: 13px; max-width: 900px; }
.warning { color: #8a3b00; max-width: 900px; }
figure { margin: 12px 0; } figcaption { color: #555; font-size: 13px; }
details { margin-top: 12px; } summary { cursor: pointer; font-weight: 600; }
"""
