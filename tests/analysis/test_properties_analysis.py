"""analysis.properties on hand-made property and score rows."""

import altair as alt
import pandas as pd
import pytest

from analysis import AnalysisError, render
from analysis.load import load
from analysis.properties import (
    frequency_error_chart, md_survival_chart, property_summary, property_table, ranking_agreement,
    rmse_property_chart, rmse_property_front, rmse_vs_property,
)

OPTIMIZERS = {"sgd": 0, "adam": 2, "schedulefree": 7}
# (optimizer, seed) -> (survival ps, MD status, MD temperature K, frequency MAE cm^-1, force RMSE meV/A)
MODELS = {
    ("sgd", 0): (0.1, "unstable", None, 60.0, 90.0), ("sgd", 1): (0.3, "unstable", None, 70.0, 110.0),
    ("adam", 0): (0.5, "ok", 290.0, 20.0, 40.0), ("adam", 1): (0.5, "ok", 280.0, 30.0, 44.0),
    ("schedulefree", 0): (0.5, "ok", 305.0, 40.0, 50.0), ("schedulefree", 1): (0.4, "unstable", None, None, 52.0),
}
LABELLER_MD_TEMPERATURE_K = 300.0
SUM_RULE = {"sgd": 3e-5, "adam": 1e-5, "schedulefree": 2e-5}  # cm^-1: finite-difference rounding, not ranked


def _row(optimizer, seed, prop, value, reference, unit, status, evaluator, note="", ranked=True):
    error = None if value is None or reference is None else value - reference
    return {"study": "s", "trial_id": f"{optimizer}-{seed}", "stage": "first_order", "optimizer": optimizer,
            "optimizer_order": OPTIMIZERS[optimizer], "lr": 1e-3, "seed": seed, "evaluator": evaluator,
            "property": prop, "value": value, "reference": reference, "error": error, "unit": unit,
            "status": status, "note": note, "ranked": ranked, "wall_time_s": 1.0}


@pytest.fixture
def properties():
    rows = []
    for (optimizer, seed), (survival, md_status, temperature, mae, _) in MODELS.items():
        rows.append(_row(optimizer, seed, "md_survival_time", survival, 0.5, "ps", md_status, "md"))
        rows.append(_row(optimizer, seed, "md_temperature", temperature, LABELLER_MD_TEMPERATURE_K, "K", md_status,
                         "md"))
        rows.append(_row(optimizer, seed, "phonon_acoustic_sum_rule", SUM_RULE[optimizer], 0.0, "cm^-1", "ok",
                         "phonons_gamma", ranked=False))
        vib_status, note = ("ok", "") if mae is not None else ("failed", "EvaluationFailed: relaxation")
        rows.append(_row(optimizer, seed, "vib_frequency_mae", mae, 0.0 if mae is not None else None, "cm^-1",
                         vib_status, "vibrations", note))
        rows.append(_row(optimizer, seed, "phonon_gamma_mae", None, None, "cm^-1", "skipped", "phonons_gamma",
                         "needs a cell periodic on all axes"))
    return pd.DataFrame(rows)


@pytest.fixture
def scores():
    return pd.DataFrame([{"study": "s", "trial_id": f"{o}-{s}", "stage": "first_order", "optimizer": o, "lr": 1e-3,
                          "seed": s, "test_set": test_set, "status": "ok", "force_rmse_mev_a": rmse + shift}
                         for (o, s), (*_, rmse) in MODELS.items()
                         for test_set, shift in (("val", 0.0), ("1200K", 5.0))])


def test_the_table_is_optimizer_by_property_with_the_best_two_marked(properties):
    table = property_table(properties)
    assert list(table.index) == ["sgd", "adam", "schedulefree"]  # registry order
    assert list(table.columns) == ["md_survival_time (ps)", "md_temperature (K)",
                                   "phonon_acoustic_sum_rule (cm^-1; not ranked)", "vib_frequency_mae (cm^-1)"]
    mae = table["vib_frequency_mae (cm^-1)"]
    assert mae["adam"] == "25 (7.1) **" and mae["schedulefree"] == "40 [1/2] *"  # one relaxation failed
    assert "** best" not in render(table) and "25 (7.1) **" in render(table)


def test_unstable_md_runs_are_out_of_the_means_and_ranks_and_counted_in_the_cells(properties):
    table = property_table(properties)
    temperature = table["md_temperature (K)"]
    assert temperature["sgd"] == "- [0/2; 2 unstable]"  # no rank for frames before a failure
    assert temperature["schedulefree"] == "305 [1/2; 1 unstable] **"  # 5 K from the labeller's MD, seed 0 only
    assert temperature["adam"] == "285 (7.1) *"
    survival = table["md_survival_time (ps)"]
    assert survival["sgd"] == "- [0/2; 2 unstable]" and survival["schedulefree"] == "0.5 [1/2; 1 unstable]"
    summary = property_summary(properties, quantity="abs_error").set_index(["label", "optimizer"])
    assert summary.loc[("md_temperature (K)", "schedulefree"), ["count", "n_unstable", "rank"]].tolist() == [1, 1, 1]
    assert pd.isna(summary.loc[("md_temperature (K)", "sgd"), "rank"])
    assert pd.isna(summary.loc[("md_survival_time (ps)", "adam"), "rank"])  # every stable run survives: a tie


def test_a_sanity_check_is_shown_and_never_ranked(properties):
    table = property_table(properties)
    assert table["phonon_acoustic_sum_rule (cm^-1; not ranked)"].tolist() == ["3e-05 (0)", "1e-05 (0)", "2e-05 (0)"]
    summary = property_summary(properties)
    assert summary[summary["label"].str.startswith("phonon_acoustic_sum_rule")]["rank"].isna().all()
    legacy = properties[properties["property"] != "phonon_acoustic_sum_rule"].drop(columns="ranked")
    assert property_table(legacy)["vib_frequency_mae (cm^-1)"]["adam"] == "25 (7.1) **"  # older tables: all ranked


def test_the_summary_ranks_by_closeness_to_the_reference(properties):
    summary = property_summary(properties, quantity="abs_error")
    mae = summary[summary["label"] == "vib_frequency_mae (cm^-1)"].set_index("optimizer")
    assert mae.loc["sgd", "mean"] == pytest.approx(65.0)
    assert mae["rank"].tolist() == [3, 1, 2]
    with pytest.raises(AnalysisError, match="unknown quantity 'median'"):
        property_summary(properties, quantity="median")


def test_nothing_measured_is_an_error_naming_the_statuses(properties):
    skipped = properties[properties["status"] == "skipped"]
    with pytest.raises(AnalysisError, match="no measured property .* statuses: skipped"):
        property_table(skipped)


def test_properties_without_a_reference_anywhere_are_tabled_not_crashed(properties):
    # Every error None (no evaluator with a reference, e.g. the spectrum alone): pandas reads an object column.
    unreferenced = properties[properties["status"] == "ok"].assign(reference=None, error=None)
    table = property_table(unreferenced)
    assert not table.empty


def test_rmse_against_a_property_and_its_front(properties, scores):
    merged = rmse_vs_property(properties, scores, "vib_frequency_mae")
    assert len(merged) == 5 and set(merged["test_set"]) == {"val"}  # the failed relaxation is left out
    front = rmse_property_front(properties, scores, "vib_frequency_mae")
    assert set(front["trial_id"]) == {"adam-0"}  # lowest RMSE and lowest frequency error
    front = rmse_property_front(properties, scores, "md_survival_time", test_set="1200K")
    assert set(front["trial_id"]) == {"adam-0"}
    assert ranking_agreement(properties, scores, "vib_frequency_mae") == pytest.approx(1.0)
    with pytest.raises(AnalysisError, match="'phonon_acoustic_sum_rule' is a sanity check, not ranked"):
        ranking_agreement(properties, scores, "phonon_acoustic_sum_rule")
    with pytest.raises(AnalysisError, match="no measured property 'c11'; measured: md_survival_time"):
        rmse_vs_property(properties, scores, "c11")
    with pytest.raises(AnalysisError, match="no 'ok' scores on test set 'train'"):
        rmse_vs_property(properties, scores, "md_survival_time", test_set="train")


def test_charts_are_built(properties, scores):
    for chart in (md_survival_chart(properties), frequency_error_chart(properties),
                  rmse_property_chart(properties, scores, "md_survival_time")):
        assert isinstance(chart, alt.TopLevelMixin)
        chart.to_dict()  # valid Vega-Lite
    with pytest.raises(AnalysisError, match="no measured md_survival_time"):
        md_survival_chart(properties[properties["evaluator"] != "md"])


def test_load_reads_the_properties_table(properties, tmp_path):
    (tmp_path / "results").mkdir()
    properties.to_parquet(tmp_path / "results" / "properties.parquet")
    loaded = load(tmp_path, table="properties", optimizer="adam")
    assert set(loaded["property"]) == {"md_survival_time", "md_temperature", "phonon_acoustic_sum_rule",
                                       "vib_frequency_mae", "phonon_gamma_mae"}
    with pytest.raises(AnalysisError, match="has no column 'evaluator'"):
        properties.drop(columns="evaluator").to_parquet(tmp_path / "results" / "properties.parquet")
        load(tmp_path, table="properties")


def test_the_cli_prints_the_table_and_the_ranking_agreement(properties, scores, tmp_path):
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    study = tmp_path / "s" / "results"
    study.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(properties, preserve_index=False), study / "properties.parquet")
    pq.write_table(pa.Table.from_pandas(scores, preserve_index=False), study / "scores.parquet")
    result = subprocess.run([sys.executable, "-m", "analysis", "properties", str(study.parent), "--property",
                             "vib_frequency_mae", "--out", str(tmp_path / "figures")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Physical properties: value, mean (std) over seeds")
    assert any("Spearman's rho of the two rankings over optimizers" in line for line in lines)
    assert {p.name for p in (tmp_path / "figures").iterdir()} >= {"properties.md", "md_survival.png",
                                                                   "frequency_error.png", "rmse_vs_property.png"}


def test_dispersion_stacking_fault_and_liquid_rows_show_with_their_units(properties):
    checks = (("dispersion_mae", "THz", "dispersion", 0.0), ("unstable_stacking_fault", "J/m^2", "stacking_fault", 0.3),
              ("self_diffusion", "A^2/ps", "liquid", 0.5))
    rows = [_row(optimizer, seed, prop, reference + 0.01 * (OPTIMIZERS[optimizer] + seed), reference, unit, "ok",
                 evaluator)
            for optimizer, seed in MODELS for prop, unit, evaluator, reference in checks]
    both = pd.concat([properties, pd.DataFrame(rows)], ignore_index=True)
    table = property_table(both)
    assert {"dispersion_mae (THz)", "unstable_stacking_fault (J/m^2)", "self_diffusion (A^2/ps)"} <= set(table.columns)
    assert table["dispersion_mae (THz)"]["sgd"].endswith("**")  # the smallest error, as every property's
    panels = frequency_error_chart(both).to_dict()
    values = next(iter(panels["datasets"].values()))
    assert {"vib_frequency_mae (cm^-1)", "dispersion_mae (THz)"} <= {v["property"] for v in values}
    assert panels["resolve"] == {"scale": {"y": "independent"}}  # cm^-1 and THz, each on its own axis
