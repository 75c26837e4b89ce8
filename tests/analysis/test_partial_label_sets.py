"""Test sets that carry energies only (a path of two dimer curves), forces only, or are the
foundation's own scores before fine-tuning: every command that shows scores runs on such a study,
leaves a metric out where a test set lacks it, and never prints a nan column."""

import io
import json
import re

import altair as alt
import pandas as pd
import pytest
from synthetic_study import BEFORE, CURVES, write_partial_study

from analysis.charts import front_metrics, fronts_left_out, frontier_panels, lr_sensitivity_chart
from analysis.cli import main
from analysis.energy_profile import energy_profile_chart, energy_profiles
from analysis.load import load
from analysis.report import report_html
from analysis.study_summary import study_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WITH_FORCES = ["val", "forces"]  # fine-tuned test sets with force labels, in file order


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    return write_partial_study(tmp_path_factory.mktemp("storage"))


@pytest.fixture(scope="module")
def first_order(partial):
    return load(partial, stage="first_order")


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def sections(text: str) -> dict[str, list[str]]:
    """Heading line -> the column names of the table under it, for each titled table of `text`."""
    blocks = [block.splitlines() for block in text.split("\n\n")]
    return {lines[0]: re.split(r"\s{2,}", lines[1].strip()) for lines in blocks if len(lines) > 2}


def saved_spec(html_file) -> dict:
    """The Vega-Lite spec inside a chart saved as HTML."""
    return json.loads(re.search(r"const spec = (\{.*\});$", html_file.read_text(), re.M).group(1))


def no_nan(text: str) -> bool:
    return re.search(r"\bnan\b", text, re.IGNORECASE) is None


def test_closing_tables_split_force_and_energy_sets(partial):
    text = study_summary(partial, 12.0)
    tables = {heading.split(",")[0]: columns for heading, columns in sections(text).items()
              if "stage first_order" in heading}
    assert tables == {
        "force RMSE (meV/A)": ["optimizer", "lr", "val", "forces", "val_before", "replay_before"],
        "energy RMSE (meV/atom)": ["optimizer", "lr", "val", "dimers", "val_before", "replay_before"],
        "relative-energy RMSE (meV)": ["optimizer", "lr", "dimers"],
        "barrier error": ["optimizer", "lr", "dimers"],
    }
    assert no_nan(text) and "not ok: lamb lr=0.001 seed=2: diverged" in text
    unmarked = f"{BEFORE['val_before']:.2f} (0.00)  {BEFORE['replay_before']:.2f} (0.00)"  # all equal: no best
    assert all(line.endswith(unmarked) for line in text.split("\n\n")[1].splitlines()[3:])


def test_table_defaults_to_the_metrics_the_study_holds(capsys, partial, tmp_path):
    code, out, _ = run_main(capsys, "table", partial, "--by", "optimizer,lr", "--out", tmp_path)
    tables = {heading.split(":")[0]: columns[2:] for heading, columns in sections(out).items()}
    assert code == 0 and no_nan(out)
    assert tables == {"Force RMSE (meV/Å)": [*WITH_FORCES, "val_before", "replay_before"],
                      "Energy RMSE (meV/atom)": ["val", "dimers", "val_before", "replay_before"],
                      "Relative-energy RMSE (meV)": ["dimers"],
                      "Barrier error, predicted - reference (meV)": ["dimers"]}
    tidy = pd.read_csv(tmp_path / "table.csv")
    assert tidy.query("test_set == 'dimers'")["force_rmse_mev_a_n"].eq(0).all()


def test_a_signed_barrier_error_ranks_by_its_magnitude(capsys, partial):
    """All barrier errors are negative: the best two are those closest to zero, adamw then adam."""
    _, csv, _ = run_main(capsys, "table", partial, "--lr", "1e-3", "--metric", "barrier_error_mev", "--format", "csv")
    ranks = pd.read_csv(io.StringIO(csv)).query("test_set == 'dimers'").set_index("optimizer")["barrier_error_mev_rank"]
    assert ranks.to_dict() == {"adam": 2, "adamw": 1, "lamb": 3}


def test_fronts_only_for_the_test_sets_that_hold_the_metric(capsys, partial, tmp_path):
    code, out, _ = run_main(capsys, "frontier", partial, "--out", tmp_path)
    assert code == 0 and no_nan(out)
    assert pd.read_csv(tmp_path / "frontier.csv")["test_set"].drop_duplicates().tolist() == WITH_FORCES
    assert out.splitlines()[-6] == ("no front for dimers: no force_rmse_mev_a (--y chooses another column); "
                                    "val_before, replay_before: the foundation before fine-tuning")
    assert (tmp_path / "frontier.png").read_bytes().startswith(PNG_MAGIC)
    code, out, _ = run_main(capsys, "frontier", partial, "--test-set", "dimers", "--y", "energy_rmse_mev_atom",
                            "--format", "csv")
    assert code == 0 and set(pd.read_csv(io.StringIO(out))["test_set"]) == {"dimers"}


def test_a_front_of_a_metric_no_chosen_set_holds_is_one_line(capsys, partial):
    code, out, err = run_main(capsys, "frontier", partial, "--test-set", "dimers")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("error: 'force_rmse_mev_a' holds no values on test set dimers; columns with values there:")
    assert "energy_rmse_mev_atom" in err
    code, _, err = run_main(capsys, "frontier", partial, "--test-set", "val_before")
    assert code == 2 and "only the foundation's scores before fine-tuning" in err


def test_front_panels_and_metrics_per_test_set(first_order):
    assert front_metrics(first_order) == {"force_rmse_mev_a": WITH_FORCES, "energy_rmse_mev_atom": ["dimers"]}
    spec = frontier_panels(first_order).to_dict()
    assert [panel["title"].split(" on ")[1].split(" vs")[0] for panel in spec["concat"]] == WITH_FORCES
    assert fronts_left_out(first_order[first_order["test_set"].isin(WITH_FORCES)], "force_rmse_mev_a") == ""


def test_lr_sensitivity_leaves_out_sets_without_the_metric(capsys, partial, tmp_path, first_order):
    code, out, _ = run_main(capsys, "lr", partial, "--out", tmp_path)
    assert code == 0 and no_nan(out) and "dimers" not in out
    spec = lr_sensitivity_chart(first_order).to_dict()
    assert [row["test_set"] for row in spec["datasets"][spec["data"]["name"]]].count("dimers") == 0
    energy = lr_sensitivity_chart(first_order, "energy_rmse_mev_atom").to_dict()
    assert spec["facet"]["column"]["sort"] == WITH_FORCES and energy["facet"]["column"]["sort"] == ["val", "dimers"]


@pytest.mark.parametrize("command", [["lbfgs"], ["improvement", "--lr", "1e-3"]])
def test_comparisons_only_on_fine_tuned_sets_with_the_metric(capsys, partial, command):
    code, out, _ = run_main(capsys, command[0], partial, *command[1:], "--format", "csv")
    assert code == 0 and no_nan(out)
    assert pd.read_csv(io.StringIO(out))["test_set"].drop_duplicates().tolist() == WITH_FORCES


def test_curves_and_time_to_target_on_the_validation_energy(capsys, partial, tmp_path):
    code, out, _ = run_main(capsys, "time-to-target", partial, "--y", "val_energy_rmse_mev_atom")
    assert code == 0 and out.startswith("Validation energy RMSE <= 1.1 x the best final value (5.54 meV/atom)")
    code, out, _ = run_main(capsys, "curves", partial, "--y", "val_energy_rmse_mev_atom", "--out", tmp_path)
    assert code == 0 and no_nan(out) and (tmp_path / "curves.html").exists()


def test_energy_profile_picks_the_only_scan_and_each_optimizers_validation_lr(capsys, partial, tmp_path):
    code, out, _ = run_main(capsys, "energy-profile", partial, "--out", tmp_path)
    assert code == 0 and out.startswith("Energy profile of dimers:") and no_nan(out)
    assert ("curves: H-H (4 points), C-C (3 points); chart: each optimizer at its lr chosen on validation "
            "(Force RMSE (meV/Å)): adam 0.001, adamw 0.001, lamb 0.0001") in out  # lamb 1e-3 has a diverged seed
    spec = saved_spec(tmp_path / "energy_profile.html")
    rows = next(iter(spec["datasets"].values()))
    assert {(r["optimizer"], r["lr"]) for r in rows if r["kind"] == "predicted"} == {
        ("adam", 1e-3), ("adamw", 1e-3), ("lamb", 1e-4)}
    assert spec["facet"] == {"row": {"field": "curve", "sort": list(CURVES), "title": None, "type": "nominal"}}
    assert (tmp_path / "energy_profile.png").read_bytes().startswith(PNG_MAGIC)


def test_energy_profile_of_every_lr_is_one_panel_each(capsys, partial, tmp_path):
    code, _, _ = run_main(capsys, "energy-profile", partial, "--test-set", "dimers", "--all-lrs", "--out", tmp_path)
    spec = saved_spec(tmp_path / "energy_profile.html")
    assert code == 0 and set(spec["facet"]) == {"row", "column"} and spec["facet"]["column"]["field"] == "lr"
    reference = [r for r in next(iter(spec["datasets"].values())) if r["kind"] == "reference"]
    assert len(reference) == 2 * sum(map(len, CURVES.values()))  # the reference curves in each lr's panel


def test_the_report_page_has_fronts_per_metric_and_the_profiles(partial):
    page = report_html(partial)
    assert ">nan<" not in page and "Energy profiles" in page
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    assert [c.split(" against")[0] for c in captions[:2]] == ["Each trial&#x27;s Force RMSE (meV/Å)",
                                                              "Each trial&#x27;s Energy RMSE (meV/atom)"]
    assert captions[2].startswith("Relative energies along dimers (H-H (4 points), C-C (3 points))")


def test_profile_chart_of_several_lrs_is_a_valid_spec(first_order, tmp_path):
    chart = energy_profile_chart(energy_profiles(first_order[first_order["test_set"] == "dimers"]))
    assert isinstance(chart, alt.FacetChart) and chart.to_dict()["facet"]["column"]["field"] == "lr"
    chart.save(tmp_path / "profile.html")
    assert "vega" in (tmp_path / "profile.html").read_text()


def test_a_set_without_profiles_named_for_the_profile_is_one_error(capsys, partial):
    code, _, err = run_main(capsys, "energy-profile", partial, "--test-set", "val")
    assert code == 2 and err == ("error: test set 'val' has no energy profiles (it is not one of the run's "
                                 "profile_tests, or the study predates them)\n")
    code, _, err = run_main(capsys, "energy-profile", partial, "--test-set", "dimers,val")
    assert code == 2 and err == "error: one test set at a time; got dimers, val\n"
