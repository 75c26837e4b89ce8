"""format_summary marks and the text, Markdown, CSV and LaTeX renderers."""

import pandas as pd
import pytest

from analysis import AnalysisError, format_summary, mean_std, render, summary_table


@pytest.fixture
def summary():
    means = {("adam", "300K"): 2.0, ("sgd", "300K"): 1.0, ("lamb", "300K"): 3.0,
             ("adam", "1200K"): 6.0, ("sgd", "1200K"): 5.0, ("lamb", "1200K"): 4.0}
    rows = [dict(optimizer=o, test_set=t, seed=s, status="ok", force_rmse_mev_a=m + (s - 1) * 0.5)
            for (o, t), m in means.items() for s in range(3)]
    return summary_table(pd.DataFrame(rows), ["force_rmse_mev_a"])


def test_mean_std_strings():
    assert mean_std(12.3456, 0.5, digits=2) == "12.35 (0.50)"
    assert mean_std(12.3456, float("nan"), digits=1) == "12.3"


def test_text_marks_best_two_per_condition(summary):
    wide = format_summary(summary, "force_rmse_mev_a", fmt="text")
    assert list(wide.columns) == ["300K", "1200K"] and list(wide.index) == ["adam", "sgd", "lamb"]
    assert wide.loc["sgd", "300K"] == "1.00 (0.50) **"
    assert wide.loc["adam", "300K"] == "2.00 (0.50) *"
    assert wide.loc["lamb", "300K"] == "3.00 (0.50)"
    assert wide.loc["lamb", "1200K"] == "4.00 (0.50) **" and wide.loc["adam", "1200K"] == "6.00 (0.50)"


def test_markdown_and_latex_marks(summary):
    md = format_summary(summary, "force_rmse_mev_a", fmt="markdown")
    assert md.loc["sgd", "300K"] == "**1.00 (0.50)**" and md.loc["adam", "300K"] == "*2.00 (0.50)*"
    tex = format_summary(summary, "force_rmse_mev_a", fmt="latex", digits=1)
    assert tex.loc["sgd", "300K"] == r"\textbf{1.0 (0.5)}" and tex.loc["adam", "300K"] == r"\underline{2.0 (0.5)}"


def test_render_text_aligns_columns(summary):
    text = render(format_summary(summary, "force_rmse_mev_a"), "text").splitlines()
    assert text[0].split() == ["optimizer", "300K", "1200K"]
    assert set(text[1].replace(" ", "")) == {"-"}
    assert text[2].startswith("adam       2.00 (0.50) *")
    assert text[2].index("6.00") == text[0].index("1200K")


def test_render_markdown_csv_latex():
    frame = pd.DataFrame({"test_set": ["300K"], "force_rmse_mev_a": [1.23456], "lr": [0.0001], "ok": [True]})
    assert render(frame, "markdown").splitlines() == [
        "| test_set | force_rmse_mev_a | lr | ok |", "| --- | --- | --- | --- |", "| 300K | 1.23 | 0.0001 | True |"]
    assert render(frame, "csv").splitlines() == ["test_set,force_rmse_mev_a,lr,ok", "300K,1.23456,0.0001,True"]
    latex = render(frame, "latex").splitlines()
    assert latex[0] == r"\begin{tabular}{llll}" and latex[-1] == r"\end{tabular}"
    assert latex[2] == r"test\_set & force\_rmse\_mev\_a & lr & ok \\"
    assert latex[4] == r"300K & 1.23 & 0.0001 & True \\"


def test_missing_values_render_empty_and_missing_cells_as_dash(summary):
    gaps = pd.DataFrame({"a": [None, 1.0], "b": [2.0, float("nan")]})
    assert render(gaps, "csv").splitlines() == ["a,b", ",2.0", "1.0,"]
    partial = format_summary(summary[summary["optimizer"] != "lamb"].iloc[:-1], "force_rmse_mev_a")
    assert partial.loc["sgd", "1200K"] == "-"


def test_unknown_format_is_refused(summary):
    with pytest.raises(AnalysisError, match="unknown format 'html'; choose one of text, markdown, csv, latex"):
        render(summary, "html")


def test_a_test_set_without_the_metric_has_no_column():
    """An energy-only set (no force labels) in a force table: no column, rather than a column of nan."""
    rows = [dict(optimizer=o, test_set=t, seed=s, status="ok", force_rmse_mev_a=float("nan") if t == "scan" else f + s,
                 energy_rmse_mev_atom=f / 10) for o, f in (("adam", 2.0), ("sgd", 1.0)) for t in ("300K", "scan")
            for s in range(2)]
    summary = summary_table(pd.DataFrame(rows), ["force_rmse_mev_a", "energy_rmse_mev_atom"])
    assert list(format_summary(summary, "force_rmse_mev_a").columns) == ["300K"]
    assert list(format_summary(summary, "energy_rmse_mev_atom").columns) == ["300K", "scan"]
    with pytest.raises(AnalysisError, match="the summary holds no value of force_rmse_mev_a"):
        format_summary(summary[summary["test_set"] == "scan"], "force_rmse_mev_a")


def test_counts_of_seeds_are_whole_numbers_for_people_and_full_precision_in_csv():
    frame = pd.DataFrame({"difference": [-1.5, 0.0, 2.0], "seeds_needed": [128488.0, float("inf"), float("nan")]})
    assert render(frame, "text").splitlines()[2:] == ["-1.50       128488", "0.00        inf", "2.00"]
    assert render(frame, "csv").splitlines()[1] == "-1.5,128488.0"
