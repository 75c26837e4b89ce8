"""analysis.spectrum on hand-made spectrum rows (the evaluator's long format) and scores."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.spectrum import (
    GRID,
    at_floor,
    densities,
    formatted,
    kappa_alpha_table,
    kappa_error_correlation,
    per_model,
    quadratures,
    spectrum_rows,
)

KAPPA_PH = {"sgd": 1000.0, "adam": 100.0, "lamb": 10.0}


def model_rows(optimizer: str, seed: int, stage: str = "first_order") -> list[dict]:
    trial = f"{optimizer}_{seed}"
    kappa_ph = KAPPA_PH[optimizer] * (1 + 0.1 * seed)
    values = {"H_kappa": 1000.0, "PH_kappa": kappa_ph, "alpha": 1 - math.log(kappa_ph) / math.log(1000.0),
              "H_lambda_max": 50.0, "PH_lambda_max": 50.0, "PH_negative_mass": 0.1, "H_trace": 3.0, "PH_trace": 1.0}
    quadrature = {"nodes": [[0.0, 25.0, 50.0], [0.0, 50.0]], "weights": [[0.8, 0.1, 0.1], [0.9, 0.1]]}
    return [{"study": "s", "trial_id": trial, "stage": stage, "optimizer": optimizer, "lr": 1e-3, "seed": seed,
             "evaluator": "spectrum", "property": name, "value": value, "unit": "1", "status": "ok",
             "note": json.dumps(quadrature) if name.endswith("_trace") else ""} for name, value in values.items()]


@pytest.fixture
def rows():
    return pd.DataFrame([row for optimizer in KAPPA_PH for seed in (0, 1, 2) for row in model_rows(optimizer, seed)])


@pytest.fixture
def scores():
    # force RMSE rising with kappa(PH): the ranking of errors is the ranking of kappas
    return pd.DataFrame([{"study": "s", "trial_id": f"{o}_{seed}", "stage": "first_order", "optimizer": o, "lr": 1e-3,
                          "seed": seed, "test_set": "1200K", "status": "ok",
                          "force_rmse_mev_a": 100 + KAPPA_PH[o] * (1 + 0.1 * seed)}
                         for o in KAPPA_PH for seed in (0, 1, 2)])


def test_kappa_and_alpha_per_optimizer_with_the_seed_spread(rows):
    table = kappa_alpha_table(per_model(rows)).set_index("optimizer")
    assert table.loc["adam", "PH_kappa_mean"] == pytest.approx(110.0)
    assert table.loc["adam", "PH_kappa_std"] == pytest.approx(10.0)
    assert table.loc["sgd", "seeds"] == 3
    assert table.loc["lamb", "alpha_mean"] > table.loc["adam", "alpha_mean"] > table.loc["sgd", "alpha_mean"]
    assert formatted(kappa_alpha_table(per_model(rows))).set_index("optimizer").loc["adam", "PH_kappa"] == "110 (10)"


def test_the_densities_are_the_quadratures_normalised(rows):
    nodes = quadratures(rows)
    per_model = nodes.groupby(["trial_id", "operator"])["weight"].sum()
    np.testing.assert_allclose(per_model, 1.0)
    assert nodes.loc[nodes["operator"] == "H", "node"].max() == pytest.approx(1.0)  # 50 / lambda_max 50
    density = densities(rows)
    one = density[(density["optimizer"] == "adam") & (density["operator"] == "H")]
    # the mass of the nodes inside the grid (every node here): integrates to 1
    assert np.trapezoid(one["density"], GRID) == pytest.approx(1.0, abs=0.01)


def test_kappa_ranks_with_the_errors(rows, scores):
    result = kappa_error_correlation(per_model(rows), scores, test_set="1200K")
    assert result["points"] == 9 and result["rho"] == pytest.approx(1.0) and result["p_value"] < 1e-3


def test_kappa_recomputed_at_another_floor_from_the_quadratures(rows):
    # nodes 0, 25, 50 (weights 0.8, 0.1, 0.1) and 0, 50 (0.9, 0.1) over two probes, lambda_max 50
    models = at_floor(rows, relative_floor=0.1, quantile=0.1).set_index("trial_id")
    assert models.loc["adam_0", "H_kappa"] == pytest.approx(2.0)    # lambda_low 25: the lowest node above 5
    assert models.loc["adam_0", "alpha"] == pytest.approx(0.0)      # the same quadrature for PH
    high = at_floor(rows, relative_floor=0.1, quantile=0.5).set_index("trial_id")
    assert high.loc["adam_0", "H_kappa"] == pytest.approx(1.0)      # half the mass above the floor sits at 50


def test_too_few_points_give_no_correlation(rows, scores):
    result = kappa_error_correlation(per_model(rows), scores[scores["trial_id"].isin(["adam_0", "sgd_0"])],
                                     test_set="1200K")
    assert result["points"] == 2 and math.isnan(result["rho"])


def test_a_study_without_spectrum_rows_says_how_to_get_them(rows):
    with pytest.raises(AnalysisError, match="--space curvature"):
        spectrum_rows(rows.assign(evaluator="md"))


def test_the_command_prints_kappa_alpha_and_the_correlation_and_writes_the_densities(rows, scores, tmp_path, capsys):
    from analysis.cli import main

    results = tmp_path / "curvature" / "results"
    results.mkdir(parents=True)
    rows.assign(reference=np.nan, error=np.nan).to_parquet(results / "properties.parquet")
    scores.to_parquet(results / "scores.parquet")
    assert main(["spectrum", str(tmp_path / "curvature"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "kappa and alpha per optimizer" in out and "Spearman's rho of kappa(PH)" in out and "1200K" in out
    assert (tmp_path / "out" / "spectral_density.html").is_file() and (tmp_path / "out" / "spectrum.csv").is_file()
