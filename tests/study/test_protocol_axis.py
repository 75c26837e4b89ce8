"""A space's protocols are a grid axis: every optimizer (at its own lr) x seed runs under each named
overlay, and the name lands in the score and curve rows (real Ray, real MACE, real Parquet)."""

import pytest
from launching import launched_space, results_table

from trainables.stages.finetune import run_finetune

SPACE = """
optimizers = ["adam", "schedulefree"]
seeds = [0]
[lr_by_optimizer]
adam = 1e-3
schedulefree = 5e-3
[protocols.constant]
[protocols.ema]
ema_decay = 0.9
[fixed]
data_size = "smoke"
epochs = 1
batch_size = 4
compile = false
"""


@pytest.fixture(scope="module")
def protocol_study(cache_root, smoke_inputs, tmp_path_factory):
    return launched_space(SPACE, "protocols", tmp_path_factory)


def test_the_protocol_axis_expands_the_grid_and_lands_in_the_rows(protocol_study):
    folder, _ = protocol_study
    scores = results_table(folder, "scores")
    trials = scores.drop_duplicates("trial_id")
    assert sorted(zip(trials.optimizer, trials.lr, trials.protocol)) == [
        ("adam", 1e-3, "constant"), ("adam", 1e-3, "ema"), ("schedulefree", 5e-3, "constant"),
        ("schedulefree", 5e-3, "ema")]
    assert (scores.status == "ok").all()
    assert set(results_table(folder, "curves").protocol) == {"constant", "ema"}


def test_analysis_reads_each_optimizer_and_protocol_as_a_solver(protocol_study):
    """One closing table per protocol; the analysis names each pair (`adam+ema`), plain names filter."""
    from analysis.load import load

    folder, stdout = protocol_study
    assert "force RMSE (meV/A), stage first_order, protocol ema" in stdout and "schedulefree+ema" in stdout
    assert set(load(folder).optimizer) == {"adam+constant", "adam+ema", "schedulefree+constant", "schedulefree+ema"}
    assert set(load(folder, optimizer="adam").optimizer) == {"adam+constant", "adam+ema"}


def test_each_trial_runs_its_protocols_settings(protocol_study, smoke_config, smoke_inputs):
    """The study's validation scores are those of the same runs made here, EMA on or off."""
    val = results_table(protocol_study[0], "scores").query("test_set == 'val'").set_index(["optimizer", "protocol"])
    base = smoke_config.replace(epochs=1)
    for optimizer, lr in (("adam", 1e-3), ("schedulefree", 5e-3)):
        for protocol, changes in (("constant", {}), ("ema", {"ema_decay": 0.9})):
            here = run_finetune(base.replace(optimizer=optimizer, lr=lr, **changes), smoke_inputs)
            assert val.loc[(optimizer, protocol), "force_rmse_mev_a"] == pytest.approx(
                here.scores["val"]["force_rmse_mev_a"], rel=1e-6), (optimizer, protocol)
        assert val.loc[(optimizer, "ema"), "force_rmse_mev_a"] != val.loc[(optimizer, "constant"), "force_rmse_mev_a"]
