"""Energy profiles of a scan: the long frame per curve, the summary and the chart, and the CLI on a study on disk."""

import json
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import AnalysisError
from analysis.energy_profile import (
    energy_profile_chart,
    energy_profiles,
    profile_summary,
    profile_test_set,
    profile_test_sets,
)

REFERENCE = [10.0, 0.0, 60.0]
PREDICTED = {("adam", 0): [12.0, 0.0, 70.0], ("adam", 1): [8.0, 0.0, 50.0], ("sgd", 0): [20.0, 0.0, 100.0]}


def scan_rows() -> list[dict]:
    rows = []
    for (optimizer, seed), predicted in PREDICTED.items():
        error = [p - r for p, r in zip(predicted, REFERENCE)]
        rows.append(dict(study="scan", trial_id=f"{optimizer}_{seed}", stage="first_order", optimizer=optimizer,
                         optimizer_order={"sgd": 0, "adam": 2}[optimizer], lr=1e-3, seed=seed, test_set="dihedral",
                         status="ok", energy_rmse_mev_atom=1.0, force_rmse_mev_a=float("nan"),
                         rel_energy_rmse_mev=(sum(e * e for e in error) / 3) ** 0.5,
                         rel_energy_max_error_mev=max(map(abs, error)), barrier_error_mev=max(predicted) - 60.0,
                         profile_predicted_mev=json.dumps(predicted), profile_reference_mev=json.dumps(REFERENCE)))
        rows.append({**rows[-1], "test_set": "300K", "profile_predicted_mev": None, "profile_reference_mev": None,
                     "rel_energy_rmse_mev": None, "rel_energy_max_error_mev": None, "barrier_error_mev": None})
    return rows


@pytest.fixture()
def scores() -> pd.DataFrame:
    return pd.DataFrame(scan_rows())


def two_curve_rows(lrs=(1e-3,)) -> pd.DataFrame:
    """The dihedral rows as a file of two curves (its first two points 'a', its last 'b'), at each of `lrs`."""
    rows = pd.DataFrame(scan_rows())
    rows = rows[rows["test_set"] == "dihedral"].assign(profile_curve=json.dumps(["a", "a", "b"]))
    return pd.concat([rows.assign(lr=lr, trial_id=rows["trial_id"] + f"_{lr:g}") for lr in lrs], ignore_index=True)


def test_profiles_become_one_row_per_point(scores):
    points = energy_profiles(scores[scores["test_set"] == "dihedral"])
    assert len(points) == 3 * len(PREDICTED)
    adam0 = points[points["trial_id"] == "adam_0"]
    assert adam0["predicted_mev"].tolist() == PREDICTED[("adam", 0)] and adam0["reference_mev"].tolist() == REFERENCE
    assert set(points["curve"]) == {"dihedral"}  # rows written before curves were named: one curve


def test_points_are_numbered_along_their_own_curve():
    points = energy_profiles(two_curve_rows())
    adam0 = points[points["trial_id"] == "adam_0_0.001"]
    assert adam0[["curve", "point"]].values.tolist() == [["a", 0], ["a", 1], ["b", 0]]


def test_lists_of_different_lengths_are_one_error():
    rows = two_curve_rows().assign(profile_curve=json.dumps(["a", "b"]))
    with pytest.raises(AnalysisError, match="profiles of 3 predicted, 3 reference and 2 curve entries"):
        energy_profiles(rows)


def test_the_chart_of_several_lrs_and_curves_has_a_panel_each(tmp_path):
    chart = energy_profile_chart(energy_profiles(two_curve_rows(lrs=(1e-3, 1e-4))))
    spec = chart.to_dict()  # validates the Vega-Lite schema; data at the top level, as a facet needs
    assert {name: facet["field"] for name, facet in spec["facet"].items()} == {"row": "curve", "column": "lr"}
    rows = spec["datasets"][spec["data"]["name"]]
    assert sorted({(r["lr"], r["curve"]) for r in rows if r["kind"] == "reference"}) == [
        (1e-4, "a"), (1e-4, "b"), (1e-3, "a"), (1e-3, "b")]
    chart.save(tmp_path / "profile.html")
    assert '"facet"' in (tmp_path / "profile.html").read_text()


def test_the_profile_test_set_is_found_or_named(scores):
    assert profile_test_sets(scores) == ["dihedral"] and profile_test_set(scores) == "dihedral"
    assert profile_test_set(scores, ["300K"]) == "300K"
    two = pd.concat([scores, scores[scores["test_set"] == "dihedral"].assign(test_set="path")])
    with pytest.raises(AnalysisError, match=r"several test sets have energy profiles \(dihedral, path\): choose one"):
        profile_test_set(two)
    with pytest.raises(AnalysisError, match="no test set has energy profiles .* test sets: 300K"):
        profile_test_set(scores[scores["test_set"] == "300K"])


def test_summary_in_registry_order_and_the_chart_averages_seeds(scores):
    summary = profile_summary(scores[scores["test_set"] == "dihedral"])
    assert summary["optimizer"].tolist() == ["sgd", "adam"]
    assert summary.set_index("optimizer").loc["adam", "barrier_error_mev"] == pytest.approx(0.0)
    spec = energy_profile_chart(energy_profiles(scores[scores["test_set"] == "dihedral"])).to_dict()
    rows = [r for data in spec["datasets"].values() for r in data if r.get("optimizer") == "adam"]
    assert [r["energy"] for r in sorted(rows, key=lambda r: r["point"])] == [10.0, 0.0, 60.0]


def test_a_set_without_profiles_is_one_error(scores):
    with pytest.raises(AnalysisError, match="test set '300K' has no energy profiles"):
        energy_profiles(scores[scores["test_set"] == "300K"])


def test_cli_prints_the_summary_and_writes_the_chart(tmp_path):
    study = tmp_path / "scan"
    (study / "results").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(scan_rows()), study / "results" / "scores.parquet")
    result = subprocess.run([sys.executable, "-m", "analysis", "energy-profile", str(study), "--test-set", "dihedral",
                             "--out", str(tmp_path / "figures")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Energy profile of dihedral: relative-energy errors (meV), mean over seeds"
    assert (tmp_path / "figures" / "energy_profile.png").stat().st_size > 10_000
    found = subprocess.run([sys.executable, "-m", "analysis", "energy-profile", str(study)],
                           capture_output=True, text=True, timeout=120)
    assert found.returncode == 0 and found.stdout == result.stdout.split("\nwrote ")[0] + "\n"
