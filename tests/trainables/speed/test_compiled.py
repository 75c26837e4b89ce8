"""The torch.compile'd training step: same numbers as eager MACE, shared weights, savable result."""

import json
import subprocess
import sys

import pytest
import torch

from trainables.core import data as D
from trainables.core.foundation import load_foundation, save_model
from trainables.core.training import evaluate, forward
from trainables.speed.compiled import compiled_view, eager_copy
from trainables.stages.finetune import run_finetune


def _first_batch(inputs, size=4):
    return next(iter(D.make_loader(inputs.graphs["train"], size, shuffle=False)))


def test_eager_copy_is_the_same_model_and_the_view_shares_its_weights(smoke_inputs):
    model = smoke_inputs.initial_model()
    copy = eager_copy(model)
    assert {n for n, _ in copy.named_parameters()} == {n for n, _ in model.named_parameters()}
    batch = _first_batch(smoke_inputs)
    expected, got = forward(model, batch, training=False), forward(copy, batch, training=False)
    torch.testing.assert_close(got["forces"], expected["forces"], rtol=1e-5, atol=1e-5)
    view = compiled_view(copy)
    assert {id(p) for p in view.parameters()} == {id(p) for p in copy.parameters()}
    assert {id(m) for m in view.modules()}.isdisjoint({id(m) for m in copy.modules()})  # copy left as it was


def test_compiled_run_matches_eager_and_saves_like_it(smoke_config, smoke_inputs, tmp_path):
    eager = run_finetune(smoke_config.replace(compile=False), smoke_inputs)
    compiled = run_finetune(smoke_config.replace(compile=True), smoke_inputs)
    assert compiled.status == eager.status == "ok" and compiled.steps == eager.steps
    assert eager.compile_time_s == 0.0
    for a, b in zip(compiled.records, eager.records):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
        assert a["val_force_rmse_mev_a"] == pytest.approx(b["val_force_rmse_mev_a"], rel=1e-3)
    assert compiled.records[-1]["loss"] < compiled.records[0]["loss"]  # the shared weights did train
    for name, scores in eager.scores.items():
        assert compiled.scores[name]["force_rmse_mev_a"] == pytest.approx(scores["force_rmse_mev_a"], rel=1e-3)
    reloaded = load_foundation(save_model(compiled.model, tmp_path / "model.pt"))
    loader = D.make_loader(smoke_inputs.graphs["val"], 8, shuffle=False)
    assert evaluate(reloaded, loader, torch.device("cpu")) == pytest.approx(compiled.scores["val"], rel=1e-5)


def test_compiled_run_on_two_threads_finishes(tmp_path):
    """Inductor's kernels generated for two OpenMP threads corrupted the heap in the first backward
    pass (an abort, so the run is a subprocess); `compiled_view` generates one-thread kernels."""
    out = tmp_path / "run"
    args = ["--data-size", "smoke", "--threads", "2", "--compile", "true", "--epochs", "1", "--batch-size", "4"]
    result = subprocess.run([sys.executable, "-m", "trainables.finetune", *args, "--out", str(out)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert 0 < metrics["compile_time_s"] < metrics["wall_time_s"]  # a new process compiles or loads the step


def test_compiled_stress_and_its_gradient_match_eager(smoke_config, cache_root):
    """The periodic system: forces, stress and the loss gradient through both, compiled vs eager."""
    from trainables.core.loss import eq1_loss
    from trainables.stages.finetune import loss_weights
    from trainables.stages.inputs import prepare_inputs

    config = smoke_config.replace(system="cu3au-emt", stress_weight=1.0, mode="naive", replay_samples=None)
    inputs = prepare_inputs(config)
    batch = _first_batch(inputs)
    model = eager_copy(inputs.initial_model())
    outputs, gradients = [], []
    for step_model in (model, compiled_view(model)):
        model.zero_grad(set_to_none=True)
        output = forward(step_model, batch, training=True, compute_stress=True)
        eq1_loss(batch, output, loss_weights(config)).backward()
        outputs.append({k: output[k].detach() for k in ("energy", "forces", "stress")})
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(outputs[1][key], outputs[0][key], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-3, atol=1e-5)


def test_a_model_dynamo_cannot_trace_stops_with_the_remedy(smoke_inputs):
    """The scripted model (e3nn's TorchScript kernels), not its eager copy: one line naming --compile false."""
    from trainables.errors import ConfigError

    view = compiled_view(smoke_inputs.initial_model())
    with pytest.raises(ConfigError, match=r"^torch.compile failed on this model \(.+\); run it eagerly with --compile false"):
        forward(view, _first_batch(smoke_inputs), training=True)


def test_scoring_runs_through_the_training_variant_and_matches_eager(smoke_config, smoke_inputs):
    """Scores through the compiled step: as eager MACE's, and from the variant training compiled
    (no variant of their own, each of which compiles for tens of seconds)."""
    from trainables.speed.compiled import _LAST, compiled_variants
    from trainables.stages.finetune import score_all

    _LAST.clear()  # this process's compiled pair starts without variants
    config = smoke_config.replace(compile=True, epochs=1)
    compiled = run_finetune(config, smoke_inputs)
    assert compiled_variants() == 1
    eager = score_all(eager_copy(compiled.model), smoke_inputs, config.replace(compile=False), torch.device("cpu"))
    assert set(compiled.scores) >= set(eager)
    for name, scores in eager.items():
        for metric, value in scores.items():  # relative energies (meV) are differences of float32 totals
            relative = metric.startswith(("rel_energy", "barrier", "profile"))
            near = pytest.approx(value, abs=0.1) if relative else pytest.approx(value, rel=1e-5)
            assert compiled.scores[name][metric] == near, (name, metric)


def test_a_lone_configuration_is_scored_eagerly(smoke_inputs):
    """The compiled step's shapes are dynamic down to two graphs: scoring one graph through it would
    compile another variant, so the scoring module runs that batch on the eager model."""
    from trainables.speed.compiled import _LAST, ScoringThroughStep, compiled_variants, training_modules

    _LAST.clear()
    model, step = training_modules(smoke_inputs.initial_model())
    scoring = ScoringThroughStep(step, model, compute_stress=False)
    graphs = smoke_inputs.graphs["val"]
    two = D.make_loader(graphs[:2], 2, shuffle=False)
    assert evaluate(scoring, two, torch.device("cpu")) == pytest.approx(evaluate(model, two, torch.device("cpu")), rel=1e-5)
    one = D.make_loader(graphs[:1], 1, shuffle=False)
    assert evaluate(scoring, one, torch.device("cpu")) == evaluate(model, one, torch.device("cpu"))
    assert compiled_variants() == 1


def test_the_first_batchs_graph_count_does_not_specialize_the_step(smoke_inputs):
    """A first batch of two graphs (`ptr` of size 3, as the coordinates' dimension) compiled, with
    Dynamo's duck sizing, a graph static in the graph count, and the next batch size recompiled it.
    Compiled first on two graphs, the step runs four without recompiling."""
    from torch._dynamo.utils import counters

    from trainables.speed.compiled import _LAST, training_modules

    _LAST.clear()
    model, step = training_modules(smoke_inputs.initial_model())
    graphs = counters["stats"]["unique_graphs"]
    for size in (2, 4):
        forward(step, _first_batch(smoke_inputs, size), training=True)["energy"].sum().backward()
    assert counters["stats"]["unique_graphs"] - graphs == 1
