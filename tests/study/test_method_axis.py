"""A space's methods are a grid axis (issue 42): every optimizer x method (at the method's own lrs)
x seed is one trial, the method and its cost land in the rows, every method scores the replay set,
and the analysis names each optimizer+method pair a solver (real Ray, real MACE, real Parquet)."""

import pytest
from launching import launched_space, results_table

from search_spaces import get_space, space_from_dict
from trainables.errors import ConfigError
from trainables.stages.finetune import run_finetune

SPACE = """
methods = ["naive", "freeze+replay", "lora"]
optimizers = ["adam"]
seeds = [0]
[lrs_by_method]
naive = [1e-3]
"freeze+replay" = [2e-3]
lora = [1e-2]
[method.freeze]
layers = 6
[method.lora]
rank = 2
[fixed]
data_size = "smoke"
epochs = 1
batch_size = 4
replay_samples = 8
compile = false
"""


@pytest.fixture(scope="module")
def method_study(cache_root, smoke_inputs, tmp_path_factory):
    return launched_space(SPACE, "methods", tmp_path_factory)


def test_the_method_axis_expands_the_grid_and_lands_in_the_rows(method_study):
    scores = results_table(method_study[0], "scores")
    trials = scores.drop_duplicates("trial_id").set_index("method")
    assert sorted(zip(trials.index, trials.lr)) == [("freeze+replay", 2e-3), ("lora", 1e-2), ("naive", 1e-3)]
    assert (scores.status == "ok").all()
    assert set(results_table(method_study[0], "curves").method) == {"naive", "freeze+replay", "lora"}
    # every method scores the pre-training sample before and after: forgetting for each
    assert {"replay", "replay_before"} <= set(scores.test_set)
    assert scores.groupby("method").test_set.apply(lambda s: {"replay", "replay_before"} <= set(s)).all()
    assert max(trials.trainable_params["lora"], trials.trainable_params["freeze+replay"]) < trials.trainable_params["naive"]
    assert (trials.step_time_ms > 0).all() and (trials.training_state_mb > 0).all()


def test_each_trial_runs_its_method_and_settings(method_study, smoke_config, smoke_inputs):
    """The study's validation scores are those of the same runs made here, one process, one inputs."""
    val = results_table(method_study[0], "scores").query("test_set == 'val'").set_index("method")
    base = smoke_config.replace(epochs=1, replay_samples=8, method_settings={"freeze": {"layers": 6},
                                                                             "lora": {"rank": 2}})
    for method, lr in (("naive", 1e-3), ("freeze+replay", 2e-3), ("lora", 1e-2)):
        here = run_finetune(base.replace(method=method, lr=lr))
        assert val.loc[method, "force_rmse_mev_a"] == pytest.approx(here.scores["val"]["force_rmse_mev_a"],
                                                                    rel=1e-6), method
        assert val.loc[method, "trainable_params"] == here.cost["trainable_params"]


def test_analysis_reads_each_optimizer_and_method_as_a_solver(method_study):
    """One closing table per method; the analysis names each pair (`adam+lora`), plain names filter,
    and a table by method, optimizer and lr has one row per pair."""
    from analysis.load import load
    from analysis.tables import summary_table

    folder, stdout = method_study
    assert "stage first_order, method lora" in stdout and "adam+lora" in stdout
    scores = load(folder)
    assert set(scores.optimizer) == {"adam+naive", "adam+freeze+replay", "adam+lora"}
    assert set(load(folder, optimizer="adam").optimizer) == set(scores.optimizer)
    table = summary_table(scores[scores.test_set == "val"], ["force_rmse_mev_a"], by=("method", "optimizer", "lr"))
    assert len(table) == 3 and set(table.method) == {"naive", "freeze+replay", "lora"}


def test_the_report_shows_the_cost_per_method(method_study):
    from analysis.report import report_html

    page = report_html(method_study[0])
    assert "Cost per method" in page and "trainable_params" in page


def test_method_benchmark_space_is_a_four_method_grid():
    space = get_space("method_benchmark")
    assert set(space.methods) == {"naive", "replay", "freeze", "lora"}
    assert {"adam", "adamw", "schedulefree", "sgd"} <= set(space.optimizers)
    assert space.num_first_order_trials == len(space.optimizers) * 8 * len(space.seeds)


@pytest.mark.parametrize("changes, message", [
    ({"methods": ["bogus"]}, "unknown method 'bogus'; known: naive, replay"),
    ({"methods": ["naive+replay"]}, "'naive' does not combine with 'replay'"),
    ({"methods": ["lora"], "method": {"lora": {"rank": 0}}}, "rank must be an integer >= 1, got 0"),
    ({"methods": ["lora"], "method": {"lora": {"ranks": 2}}}, "unknown setting(s) ['ranks']"),
    ({"methods": ["lora"], "method": {"freeze": {"layers": 2}}}, "[method] names method(s) ['freeze']"),
    ({"methods": ["lora"], "fixed": {"mode": "replay"}}, "methods is the grid's axis: drop ['mode']"),
    ({"methods": ["lora"], "lrs_by_method": {"naive": [1e-3]}}, "[lrs_by_method] must name each of the methods"),
    ({"methods": ["naive"], "protocols": {"a": {"method": "lora"}}}, "[protocols.a] sets ['method']"),
])
def test_bad_method_axis_is_one_config_error(changes, message):
    data = {"optimizers": ["adam"], "lrs": [1e-3], **changes}
    if "lrs_by_method" in changes:
        data.pop("lrs")
    with pytest.raises(ConfigError) as error:
        space_from_dict("bad", data)
    assert message in str(error.value)


def test_an_unknown_method_or_a_bad_rank_is_one_line_and_exit_2(tmp_path, launch, cache_root):
    for name, text in (("unknown", 'methods = ["adapter"]'), ("rank", 'methods = ["lora"]\n[method.lora]\nrank = -1')):
        (tmp_path / f"{name}.toml").write_text(f'optimizers = ["adam"]\nlrs = [1e-3]\n{text}\n')
        done = launch(tmp_path / "studies", space=str(tmp_path / f"{name}.toml"))
        assert done.returncode == 2, done.stderr[-2000:]
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "method" in done.stderr
