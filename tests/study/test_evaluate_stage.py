"""The evaluate stage end to end: a tiny study on the smoke system through `python -m study.launch`,
its properties table, a resume that reruns nothing, and the [properties] table's checks."""

import json

import pandas as pd
import pytest

from search_spaces import get_space
from trainables.errors import ConfigError
from trainables.properties import ROW_KEYS

SPACE = """
description = "first order, L-BFGS and evaluate on the smoke system (a test)"
optimizers = ["adam"]
lrs = [1e-3]
seeds = [0]
stages = ["first_order", "lbfgs", "evaluate"]

[fixed]
data_size = "smoke"
epochs = 1
batch_size = 4
mode = "replay"
replay_samples = 8
compile = false

[lbfgs]
max_steps = 2
history = 3

[properties]
evaluators = ["md", "vibrations", "phonons_gamma", "energy_profile"]
md_steps = 20
md_sample_every = 5
relax_steps = 50
"""
META = {"study", "trial_id", "stage", "parent_trial_id", "optimizer", "optimizer_order", "lr", "seed", "system",
        "mode", "evaluation_trial_id"}


def _properties(folder):
    return pd.read_parquet(folder / "results" / "properties.parquet")


@pytest.fixture(scope="module")
def evaluated_study(cache_root, smoke_inputs, tmp_path_factory, launch):
    """The tiny space run once; returns (space file, storage, study folder)."""
    root = tmp_path_factory.mktemp("evaluate")
    space = root / "tiny_evaluate.toml"
    space.write_text(SPACE)
    done = launch(root / "studies", space=str(space))
    assert done.returncode == 0, done.stderr[-3000:]
    return space, root / "studies", root / "studies" / "tiny_evaluate"


def test_every_model_of_both_stages_gets_its_property_rows(evaluated_study):
    _, _, folder = evaluated_study
    rows = _properties(folder)
    assert META | set(ROW_KEYS) <= set(rows.columns)
    assert not rows.duplicated(["trial_id", "stage", "evaluator", "property"]).any()
    scores = pd.read_parquet(folder / "results" / "scores.parquet")
    models = set(scores[["trial_id", "stage"]].itertuples(index=False, name=None))
    assert set(rows[["trial_id", "stage"]].itertuples(index=False, name=None)) == models
    assert set(rows["stage"]) == {"first_order", "lbfgs"}
    first = rows[rows.stage == "first_order"]["trial_id"].iloc[0]
    assert set(rows[rows.stage == "lbfgs"]["parent_trial_id"]) == {first}
    assert set(rows["evaluator"]) == {"md", "vibrations", "phonons_gamma", "energy_profile"}
    assert rows.evaluation_trial_id.nunique() == 2 and (rows.optimizer == "adam").all()
    references = json.loads((folder / "property_references.json").read_text())["references"]
    assert references.keys() >= {"vibrations", "md"}  # the labeller's MD under the study's protocol
    assert len(references["md"]["temperatures_K"]) == 20 // 5


def test_statuses_are_recorded_and_a_periodic_evaluator_on_a_molecule_is_skipped(evaluated_study):
    rows = _properties(evaluated_study[2])
    phonons = rows[rows.evaluator == "phonons_gamma"]
    assert (phonons.status == "skipped").all() and phonons.value.isna().all()
    assert phonons.note.str.contains("periodic").all()
    md = rows[rows.evaluator == "md"]
    assert set(md.status) <= {"ok", "unstable"} and md[md.property == "md_survival_time"].value.notna().all()
    temperature = md[(md.property == "md_temperature") & (md.status == "ok")]
    assert (temperature.reference != 300.0).all()  # the labeller's MD, not the thermostat's target
    assert rows[rows.property == "phonon_acoustic_sum_rule"].ranked.eq(False).all() and rows.ranked.sum() > 0
    profile = rows[rows.evaluator == "energy_profile"]
    assert (profile.status == "ok").all() and profile.error.notna().all()
    assert set(rows.status) <= {"ok", "skipped", "failed", "unstable"}
    measured = rows[rows.status != "skipped"]
    assert (measured.wall_time_s > 0).all()


def test_the_analysis_tables_read_the_studys_properties(evaluated_study):
    from analysis.load import load
    from analysis.properties import property_table

    table = property_table(load(evaluated_study[2], table="properties"))
    assert "md_temperature (K)" in table.columns and set(table.index.get_level_values(0)) == {"adam"}


def test_resuming_the_finished_study_reruns_nothing(evaluated_study, launch):
    space, storage, folder = evaluated_study
    before = _properties(folder)
    references = (folder / "property_references.json").stat().st_mtime_ns
    done = launch(storage, "--resume", space=str(space))
    assert done.returncode == 0, done.stderr[-3000:]
    pd.testing.assert_frame_equal(_properties(folder), before)  # a rerun would give other wall times
    assert (folder / "property_references.json").stat().st_mtime_ns == references


@pytest.mark.parametrize("text, message", [
    ("stages = ['first_order', 'evaluate']\n[properties]\nmd_stepz = 3\n", r"\[properties\]: unknown property setting"),
    ("stages = ['first_order', 'evaluate']\n[properties]\nevaluators = ['rdf']\n", "unknown property evaluator 'rdf'"),
    ("stages = ['first_order', 'evaluate']\n[properties]\nmd_steps = 0\n", "md_steps must be positive"),
    ("stages = ['first_order', 'evaluate', 'lbfgs']\n", "then 'evaluate' \\(in that order\\)"),
    ("stages = ['first_order']\n[properties]\nmd_steps = 5\n", r"\[properties\] needs 'evaluate' in stages"),
    ("stages = ['first_order', 'evaluate']\n[properties]\nminimum_file = 'nowhere.xyz'\n", "is not a file"),
])
def test_a_bad_properties_table_is_an_error_when_the_space_is_read(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text("optimizers = ['adam']\nlrs = [1e-3]\n" + text)
    with pytest.raises(ConfigError, match=message):
        get_space(str(path))


def test_the_properties_space_evaluates_after_first_order():
    space = get_space("properties")
    assert space.stages == ("first_order", "evaluate") and space.num_first_order_trials == 10
    assert space.property_settings["md_steps"] * 0.5 <= 1000  # fs: within the space's time budget


def test_the_periodic_properties_space_runs_every_periodic_check_on_cu3au(tmp_path):
    from trainables.embedded import get_system, system_files
    from trainables.properties import EVALUATORS, PropertySettings, embedded_structures

    space = get_space("properties_periodic")
    assert space.stages == ("first_order", "evaluate") and space.fixed["system"] == "cu3au-emt"
    settings = PropertySettings.from_dict(space.property_settings)
    periodic = {name for name, spec in EVALUATORS.items() if spec.needs_periodic}
    assert periodic <= set(settings.evaluators)
    structures = embedded_structures(system_files(get_system("cu3au-emt"), "smoke", tmp_path))  # no file read
    assert all(EVALUATORS[name].skip_reason(structures) is None for name in settings.evaluators)
