"""The spectrum evaluator on a real run folder: a fine-tuned smoke model and its saved optimizer
state, measured through the command (trainables.spectrum) at a tiny size."""

import json

import pytest

from trainables.errors import ConfigError
from trainables.properties import PropertySettings, PropertyStructures, get_evaluator, mace_calculator
from trainables.properties.spectrum import UNITS, measure_run, sample_indices

TINY = ["--configurations", "2", "--lanczos-steps", "6", "--probes", "1"]


@pytest.fixture(scope="module")
def run_folder(smoke_config, smoke_inputs, tmp_path_factory):
    from dataclasses import replace

    from trainables.core.foundation import save_model
    from trainables.stages.finetune import MODEL_FILE, run_finetune

    config = replace(smoke_config, optimizer="adam", epochs=1, mode="naive")
    result = run_finetune(config, smoke_inputs)
    folder = tmp_path_factory.mktemp("adam_run")
    save_model(result.model, folder / MODEL_FILE)
    result.optimizer_record.save(folder)
    return folder


def test_the_command_measures_a_run_folder(run_folder, capsys):
    from trainables.spectrum import main

    assert main([str(run_folder), *TINY]) == 0
    rows = json.loads((run_folder / "spectrum.json").read_text())
    assert [row["property"] for row in rows] == list(UNITS)
    assert {row["status"] for row in rows} == {"ok"}
    by_name = {row["property"]: row for row in rows}
    assert by_name["H_lambda_max"]["value"] > 0 and by_name["H_lambda_max"]["value"] >= by_name["H_lambda_low"]["value"]
    assert by_name["hessian_vector_products"]["value"] > 12  # eigsh and 6 Lanczos steps, for H and PH
    assert "second_moment (adam)" in by_name["alpha"]["note"]
    assert by_name["alpha"]["reference"] == 1.0  # Appendix A's claim for Adam-type scaling
    quadrature = json.loads(by_name["H_trace"]["note"])
    assert len(quadrature["nodes"]) == 1 and sum(quadrature["weights"][0]) == pytest.approx(1.0)
    assert "H_lambda_max" in capsys.readouterr().out


def test_the_evaluator_reads_the_run_behind_the_calculator(run_folder):
    calculator = mace_calculator(run_folder / "model.pt")
    assert calculator.directory == str(run_folder)
    assert get_evaluator("spectrum").skip_reason(PropertyStructures()) is None  # it needs no structure


def test_a_folder_without_optimizer_state_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="holds no optimizer_state.pt"):
        measure_run(tmp_path, PropertySettings())


def test_the_sample_is_spread_evenly_and_fixed():
    assert sample_indices(10, 4) == [0, 3, 6, 9]
    assert sample_indices(3, 8) == [0, 1, 2]


def test_a_quantile_of_1_is_refused():
    with pytest.raises(ConfigError, match="spectrum_quantile must be below 1"):
        PropertySettings.from_dict({"spectrum_quantile": 1.0})
