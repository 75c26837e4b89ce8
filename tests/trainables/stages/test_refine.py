"""The L-BFGS stage on a real MACE model at smoke size: it lowers Eq. 1 without worsening the
validation score, its objective is Eq. 1 with an exact gradient in any chunking, and it starts
from what a first-order run saved (ScheduleFree's averaged weights, the finetune CLI's folders)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from trainables.core.config import FinetuneConfig
from trainables.core.data import even_batch_size, make_loader
from trainables.core.foundation import load_foundation
from trainables.core.lbfgs import LBFGSConfig
from trainables.core.training import full_loss
from trainables.errors import ConfigError
from trainables.finetune import main as finetune_main
from trainables.speed.compiled import _LAST as compiled_pairs
from trainables.speed.compiled import LONG_REDUCTION_EDGES
from trainables.stages.finetune import MODEL_FILE, loss_weights, run_finetune
from trainables.stages.inputs import prepare_inputs
from trainables.stages.refine import (
    Eq1Objective,
    chunk_configurations,
    load_start_model,
    refine_checkpoint,
    run_refinement,
)

CPU = torch.device("cpu")


def objective(model, inputs, config, chunk_size=1000):
    return Eq1Objective(model.train(), inputs.graphs["train"], config, chunk_size, CPU, inputs.has_stress)


def start_point(eq1: Eq1Objective) -> torch.Tensor:
    return parameters_to_vector(eq1.params).detach().clone()


def train_loss(model, inputs, config) -> float:
    """Eq. 1 over the whole training set at the model's weights (on a copy: the objective rebinds them)."""
    eq1 = objective(copy.deepcopy(model), inputs, config)
    return eq1(start_point(eq1))[0]


def val_force(scores) -> float:
    return scores["val"]["force_rmse_mev_a"]


@pytest.fixture(scope="module")
def adam_run(smoke_config, smoke_inputs):
    return run_finetune(smoke_config, smoke_inputs)  # Adam, 2 epochs


@pytest.fixture(scope="module")
def float64(smoke_config):
    config = smoke_config.replace(dtype="float64")
    return config, prepare_inputs(config)


def test_refinement_lowers_training_loss_and_never_worsens_validation(adam_run, smoke_config, smoke_inputs):
    result = run_refinement(smoke_config, copy.deepcopy(adam_run.model), smoke_inputs, LBFGSConfig(max_steps=4))
    before = train_loss(adam_run.model, smoke_inputs, smoke_config)
    after = train_loss(result.model, smoke_inputs, smoke_config)
    first, best = result.records[0], result.records[result.best_step]
    assert first["loss"] == pytest.approx(before, rel=1e-5)  # starts from the first-order weights
    assert first["val_force_rmse_mev_a"] == pytest.approx(val_force(adam_run.scores), rel=1e-6)
    assert result.best_step >= 1 and best["loss"] == pytest.approx(after, rel=1e-5)
    assert after < 0.95 * before  # measured: 16.5 -> 14.3 in 4 steps
    assert val_force(result.scores) <= val_force(adam_run.scores)
    assert val_force(result.scores) == pytest.approx(min(r["val_force_rmse_mev_a"] for r in result.records))
    assert result.fevals == result.records[-1]["total_fevals"]


def test_gradient_matches_central_difference(float64):
    """Along a random unit direction d: (f(x + hd) - f(x - hd)) / 2h = g'd. Measured relative error
    2e-9 at h = 1e-3 and 1e-4 (the round-off floor), 2e-7 at h = 1e-2."""
    config, inputs = float64
    eq1 = objective(inputs.initial_model(), inputs, config, chunk_size=8)  # 18 configurations: 6 + 6 + 6
    x = start_point(eq1)
    x_before = x.clone()
    _, g = eq1(x)
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    d /= d.norm()
    h = 1e-3
    slope = (eq1(x + h * d)[0] - eq1(x - h * d)[0]) / (2 * h)
    assert slope == pytest.approx(float(g @ d), rel=1e-7)
    assert torch.equal(x, x_before)  # lbfgs_refine's contract: the objective leaves x alone


def test_chunked_objective_equals_unchunked_and_eq1(float64):
    config, inputs = float64
    model = inputs.initial_model()
    one, whole = objective(model, inputs, config, chunk_size=1), objective(model, inputs, config, chunk_size=1000)
    x = start_point(whole)
    (f1, g1), (f_all, g_all) = one(x), whole(x)
    assert f1 == pytest.approx(f_all, rel=1e-12)
    assert torch.allclose(g1, g_all, rtol=1e-10, atol=1e-12 * float(g_all.abs().max()))
    eq1 = full_loss(model, make_loader(inputs.graphs["train"], 4, False), loss_weights(config), CPU)
    assert f_all == pytest.approx(eq1, rel=1e-12)  # the mean over configurations, not the sum


def test_compiled_stage_takes_the_same_steps_as_eager(adam_run, smoke_config, smoke_inputs):
    """The objective's chunks through the compiled training step: the same losses, line searches
    and validation scores as eager MACE to float rounding, and the start model is left as it was."""
    start = copy.deepcopy(adam_run.model)
    compiled_pairs.clear()
    runs = {compile_: run_refinement(smoke_config.replace(compile=compile_), copy.deepcopy(start), smoke_inputs,
                                     LBFGSConfig(max_steps=3), chunk_size=7)  # 18 configurations: 6 + 6 + 6
            for compile_ in (False, True)}
    eager, compiled = runs[False], runs[True]
    assert len(compiled_pairs) == 1  # the compiled run built (or took) the compiled step; the eager one did not
    assert [r["fevals"] for r in compiled.records] == [r["fevals"] for r in eager.records]
    for a, b in zip(compiled.records, eager.records):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["val_force_rmse_mev_a"] == pytest.approx(b["val_force_rmse_mev_a"], rel=1e-4)
    assert compiled.records[-1]["loss"] < compiled.records[0]["loss"]  # the compiled view moved the weights
    assert val_force(compiled.scores) == pytest.approx(val_force(eager.scores), rel=1e-4)
    refined = compiled.model.state_dict()
    assert refined.keys() == start.state_dict().keys()
    assert any(not torch.equal(refined[k], v) for k, v in start.state_dict().items())


def test_even_chunks_never_leave_a_tiny_last_one():
    assert [even_batch_size(n, 32) for n in (1, 31, 32, 33, 460)] == [1, 31, 32, 17, 31]
    assert even_batch_size(18, 8) == 6 and even_batch_size(18, 1) == 1


def test_chunks_within_an_edge_limit_are_the_fewest_that_keep_to_it(smoke_inputs):
    graphs = smoke_inputs.graphs["train"]  # 18 configurations of 328-344 edges
    edges = [int(graph.edge_index.shape[-1]) for graph in graphs]
    assert chunk_configurations(graphs, 32) == 18
    per_chunk = chunk_configurations(graphs, 32, LONG_REDUCTION_EDGES)
    assert per_chunk == 9  # two chunks of ~3030 edges; one chunk of all 18 would be ~6060
    assert all(sum(edges[i:i + per_chunk]) <= LONG_REDUCTION_EDGES for i in range(0, len(edges), per_chunk))
    assert chunk_configurations(graphs, 7, LONG_REDUCTION_EDGES) == 6  # chunk_size is still the upper bound
    assert chunk_configurations(graphs, 32, max(edges) - 1) == 18  # no chunk can keep to it: chunk_size decides


def test_a_new_lbfgs_trial_loads_the_first_order_step_and_compiles_nothing(smoke_config, tmp_path):
    """The stage in a process of its own, as a new L-BFGS trial on a Ray worker, after a first-order
    run in another: its chunks (chunk_size 32: all 18 configurations in one would exceed
    LONG_REDUCTION_EDGES) and its scoring run the one variant of the step the first-order run
    compiled, so it loads that from the compiler cache and adds no file to it."""
    config = smoke_config.replace(compile=True, epochs=1)
    script = ("import sys\n"
              "from trainables.speed.compiled import compiled_variants\n"
              "from trainables.core.config import FinetuneConfig\n"
              "from trainables.stages.finetune import run_finetune\n"
              "from trainables.stages.inputs import prepare_inputs\n"
              "from trainables.stages.refine import run_refinement, split_options\n"
              f"config = FinetuneConfig.from_dict({config.to_dict()!r})\n"
              "inputs = prepare_inputs(config)\n"
              "if sys.argv[1] == 'first_order':\n"
              "    run_finetune(config, inputs)\n"
              "else:\n"
              "    run_refinement(config, inputs.initial_model(), inputs, *split_options({'max_steps': 1}))\n"
              "print('variants', compiled_variants())\n")

    def run(stage: str) -> str:
        done = subprocess.run([sys.executable, "-c", script, stage], capture_output=True, text=True, timeout=900,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]

    assert run("first_order") == "variants 1"  # compiles the step, or loads it where an earlier test did
    before = compiler_cache_files()
    assert run("lbfgs") == "variants 1"
    assert compiler_cache_files() == before


def compiler_cache_files() -> set[Path]:
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return {path for path in Path(cache_dir()).rglob("*") if path.is_file()}


def test_refinement_starts_from_schedulefree_averaged_weights(smoke_config, smoke_inputs, tmp_path):
    """ScheduleFree evaluates and saves its averaged (eval-mode) weights; the stage starts there."""
    config = smoke_config.replace(optimizer="schedulefree")

    def save_last_epoch(record, write_checkpoint):
        if record["epoch"] == config.epochs:
            write_checkpoint(tmp_path)

    first = run_finetune(config, smoke_inputs, on_epoch=save_last_epoch)
    start, trained = load_start_model(config, tmp_path, smoke_inputs.heads).state_dict(), first.model.state_dict()
    assert start.keys() == trained.keys() and all(torch.equal(start[k], trained[k]) for k in start)
    result = refine_checkpoint(config, tmp_path, smoke_inputs, {"max_steps": 2})
    assert result.records[0]["val_force_rmse_mev_a"] == pytest.approx(val_force(first.scores), rel=1e-6)
    assert result.records[0]["loss"] == pytest.approx(train_loss(first.model, smoke_inputs, config), rel=1e-5)
    assert val_force(result.scores) <= val_force(first.scores)


def test_cli_refines_a_finetune_output_folder(cache_root, tmp_path):
    """`python -m trainables.refine --from DIR` on what `python -m trainables.finetune --out DIR` wrote
    (that CLI's main, run in-process to save an interpreter start)."""
    source, out = tmp_path / "adam", tmp_path / "refined"
    assert finetune_main(["--data-size", "smoke", "--epochs", "1", "--compile", "false", "--out", str(source)]) == 0
    metrics = json.loads((source / "metrics.json").read_text())
    metrics["config"]["compile"] = True  # as if the first-order run had compiled: --compile false overrides it
    (source / "metrics.json").write_text(json.dumps(metrics))
    proc = subprocess.run(
        [sys.executable, "-m", "trainables.refine", "--from", str(source), "--max-steps", "2", "--compile", "false",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    steps = [line.split() for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert [int(words[1]) for words in steps] == [0, 1, 2]
    assert "stop: max_steps" in proc.stdout
    assert "val" in proc.stdout.split("test set", 1)[1]
    written = json.loads((out / "metrics.json").read_text())
    assert len(written["records"]) == 3 and written["config"]["compile"] is False
    assert "compile" not in written["lbfgs"]  # a run setting, not an L-BFGS option
    assert load_foundation(out / MODEL_FILE).heads == ["Default"]


@pytest.fixture(scope="module")
def replay_folder(cache_root, tmp_path_factory):
    """A replay-mode run's output folder: model.pt the task head, model_multihead.pt both heads."""
    folder = tmp_path_factory.mktemp("replay")
    args = ["--data-size", "smoke", "--epochs", "1", "--compile", "false", "--mode", "replay", "--replay-samples", "4"]
    assert finetune_main([*args, "--out", str(folder)]) == 0
    return folder


def test_refines_both_heads_of_a_replay_run(replay_folder):
    config = FinetuneConfig.from_dict(json.loads((replay_folder / "metrics.json").read_text())["config"])
    result = refine_checkpoint(config, replay_folder, options={"max_steps": 1})
    assert result.model.heads == ["pt_head", "Default"]
    assert {"val", "replay"} <= set(result.scores)


def test_start_model_errors_name_the_problem(replay_folder, smoke_config, tmp_path):
    with pytest.raises(ConfigError, match="holds no model.pt: not the output folder of a first-order run"):
        load_start_model(smoke_config, tmp_path, ("Default",))
    shutil.copy(replay_folder / MODEL_FILE, tmp_path / MODEL_FILE)  # the task head alone
    with pytest.raises(ConfigError, match=r"has the heads \['Default'\], but a mode='replay' run needs "
                                          r"\['pt_head', 'Default'\]"):
        load_start_model(smoke_config.replace(mode="replay", replay_samples=4), tmp_path, ("pt_head", "Default"))
