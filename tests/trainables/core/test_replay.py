"""Multi-head replay fine-tuning: the replay head equals the foundation at step 0, the exported task
head equals the task head, selection is seeded, runs report forgetting, bad configs say what is wrong."""

import dataclasses

import numpy as np
import pytest
import torch

from trainables.core.config import FinetuneConfig
from trainables.core.data import build_graphs, make_loader, read_labelled
from trainables.core.foundation import foundation_elements, load_foundation, save_model
from trainables.core.optimizers import OPTIMIZERS
from trainables.core.replay import PT_HEAD, TASK_HEAD, export_task_head, select_replay
from trainables.core.training import forward
from trainables.errors import ConfigError, DataError
from trainables.stages.finetune import run_finetune
from trainables.stages.inputs import check_data, prepare_inputs

REPLAY_SAMPLES = 6


def _predict(model, graphs):
    batch = next(iter(make_loader(graphs, len(graphs), shuffle=False)))
    out = forward(model, batch, training=False)
    return out["energy"].detach(), out["forces"].detach()


@pytest.fixture(scope="module")
def replay_config(smoke_config):
    return smoke_config.replace(mode="replay", replay_samples=REPLAY_SAMPLES, replay_selection="random")


@pytest.fixture(scope="module")
def replay_inputs(replay_config):
    return prepare_inputs(replay_config)


@pytest.fixture(scope="module")
def replay_inputs_f64(replay_config):
    return prepare_inputs(replay_config.replace(dtype="float64"))


def test_replay_head_equals_foundation_at_step_zero(replay_inputs_f64):
    model, foundation = replay_inputs_f64.initial_model(), replay_inputs_f64.foundation()
    assert model.heads == [PT_HEAD, TASK_HEAD]
    replay = replay_inputs_f64.graphs["replay"]
    assert all(int(g.head) == 0 for g in replay)  # the index of pt_head
    items = select_replay(read_labelled(replay_inputs_f64.sources.replay), REPLAY_SAMPLES, "random", 0, foundation)
    reference = build_graphs(items, foundation_elements(foundation), float(foundation.r_max), torch.float64)
    for a, b in zip(_predict(model, replay), _predict(foundation, reference)):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


def test_task_graphs_use_the_task_head_and_train_mixes_replay(replay_inputs_f64):
    graphs = replay_inputs_f64.graphs
    assert all(int(g.head) == 1 for name in ("val", *replay_inputs_f64.test_names) if name != "replay"
               for g in graphs[name])
    assert sum(int(g.head) == 0 for g in graphs["train"]) == REPLAY_SAMPLES


def test_exported_task_head_equals_task_head_and_works_with_mace_calculator(replay_inputs_f64, tmp_path):
    from mace.calculators import MACECalculator

    model = replay_inputs_f64.initial_model()
    torch.manual_seed(0)
    with torch.no_grad():  # make the heads differ so that exporting the wrong one would show
        for readout in model.readouts:
            for param in readout.parameters():
                param.add_(0.01 * torch.randn_like(param))
    exported = export_task_head(model)
    assert exported.heads == [TASK_HEAD] and next(exported.parameters()).dtype == torch.float64
    items = read_labelled(replay_inputs_f64.sources.train)[:4]

    def graphs(heads):  # a graph stores its head as an index into the model's heads
        return build_graphs(items, replay_inputs_f64.elements, float(model.r_max), torch.float64, heads)

    energy, forces = _predict(model, graphs(model.heads))
    exported_energy, exported_forces = _predict(exported, graphs(exported.heads))
    assert torch.allclose(energy, exported_energy, rtol=0, atol=1e-10)
    assert torch.allclose(forces, exported_forces, rtol=0, atol=1e-10)
    replay_items = [dataclasses.replace(item, head=PT_HEAD) for item in items]
    replay_energy = _predict(model, build_graphs(replay_items, replay_inputs_f64.elements, float(model.r_max),
                                                 torch.float64, model.heads))[0]
    assert not torch.allclose(replay_energy, energy)  # the heads differ, so the right one was exported
    atoms = items[0].atoms.copy()
    atoms.calc = MACECalculator(models=load_foundation(save_model(exported, tmp_path / "task.pt")),
                                device="cpu", default_dtype="float64")
    assert atoms.get_potential_energy() == pytest.approx(float(energy[0]), abs=1e-8)


def test_replay_run_end_to_end_writes_task_head_and_reports_forgetting(smoke_config, tmp_path):
    import json

    from trainables.finetune import main

    argv = ["--data-size", "smoke", "--batch-size", "4", "--epochs", "2", "--mode", "replay", "--replay-samples",
            str(REPLAY_SAMPLES), "--out", str(tmp_path)]
    assert main(argv) == 0
    scores = json.loads((tmp_path / "metrics.json").read_text())["scores"]
    assert {"val", "replay", "replay_before"} <= set(scores) and scores["replay"] != scores["replay_before"]
    assert load_foundation(tmp_path / "model.pt").heads == [TASK_HEAD]
    assert load_foundation(tmp_path / "model_multihead.pt").heads == [PT_HEAD, TASK_HEAD]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_runs_in_replay_mode(name, replay_config, replay_inputs):
    result = run_finetune(replay_config.replace(optimizer=name, max_steps=2), replay_inputs)
    assert result.status == "ok" and result.steps == 2
    assert result.scores["replay"] != result.scores["replay_before"]


def test_replay_before_is_scored_once_per_inputs_for_every_run(replay_config, replay_inputs, monkeypatch):
    from trainables.core.training import evaluate
    from trainables.stages import finetune

    replay_graph, replay_passes = replay_inputs.graphs["replay"][0], []

    def counting(model, loader, device, **options):
        replay_passes.extend([1] if loader.dataset[0] is replay_graph else [])
        return evaluate(model, loader, device, **options)

    monkeypatch.setattr(finetune, "evaluate", counting)
    replay_inputs.initial_scores.clear()
    first, second = (run_finetune(replay_config.replace(max_steps=1, seed=seed), replay_inputs) for seed in (0, 1))
    assert len(replay_passes) == 3  # before the first run, and after each run
    loader = make_loader(replay_inputs.graphs["replay"], replay_config.eval_batch_size, shuffle=False)
    expected = evaluate(replay_inputs.initial_model(), loader, torch.device("cpu"), reference=replay_inputs.references["replay"])
    assert first.scores["replay_before"] == second.scores["replay_before"]
    assert first.scores["replay_before"] == pytest.approx(expected, rel=1e-6)
    assert first.scores["replay"] != second.scores["replay"]


def test_naive_run_scores_the_same_replay_set(smoke_config, smoke_inputs):
    config = smoke_config.replace(replay_samples=REPLAY_SAMPLES, replay_selection="random", epochs=1)
    inputs = prepare_inputs(config)
    assert inputs.heads == (TASK_HEAD,) and len(inputs.graphs["train"]) == len(smoke_inputs.graphs["train"])
    result = run_finetune(config, inputs)
    assert result.model.heads == [TASK_HEAD] and {"replay", "replay_before"} <= set(result.scores)


@pytest.mark.parametrize("method", ["random", "fps"])
def test_selection_is_seeded_and_distinct(smoke_inputs, method):
    items = read_labelled(smoke_inputs.sources.train)
    foundation = smoke_inputs.foundation()

    def ids(seed):
        return [id(item) for item in select_replay(items, REPLAY_SAMPLES, method, seed, foundation)]

    first = ids(0)
    assert ids(0) == first and len(set(first)) == REPLAY_SAMPLES
    assert ids(1) != first


def test_fps_spreads_out_more_than_random(smoke_inputs):
    from trainables.core.replay import farthest_point_sampling, random_selection, structure_descriptors

    items = read_labelled(smoke_inputs.sources.train)
    descriptors = structure_descriptors(smoke_inputs.foundation(), items)

    def min_distance(rows):
        chosen = descriptors[rows]
        distance = np.linalg.norm(chosen[:, None] - chosen[None], axis=-1)
        return distance[np.triu_indices(len(rows), 1)].min()

    assert min_distance(farthest_point_sampling(descriptors, 5, 0)) > min_distance(random_selection(len(items), 5, 0))


@pytest.mark.parametrize("changes, message", [
    ({"mode": "replay", "replay_samples": 0}, "replay_samples must be >= 1, got 0"),
    ({"mode": "replay"}, "mode='replay' needs replay_samples"),
    ({"mode": "replay", "replay_samples": 5, "replay_selection": "kmeans"}, "replay_selection must be one of"),
    ({"mode": "multihead"}, "mode must be one of"),
    ({"replay_file": "pretrain.xyz"}, "replay_file is given but replay_samples is not set"),
    ({"replay_samples": 5, "replay_weight": -1.0}, "replay_weight must be >= 0"),
])
def test_bad_replay_config_is_a_config_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig.from_dict({"data_size": "smoke", **changes})


def test_replay_with_train_file_needs_replay_file(smoke_files):
    with pytest.raises(ConfigError, match="a replay set with train_file needs replay_file"):
        FinetuneConfig.from_dict({"train_file": str(smoke_files.train), "foundation": smoke_files.foundation,
                                  "mode": "replay", "replay_samples": 5})


def test_missing_replay_file_and_too_many_samples_are_data_errors(replay_config, tmp_path):
    """Both are found by check_data, the step study.launch runs before it starts Ray."""
    with pytest.raises(DataError, match=r"replay_file = .*missing.xyz: file not found"):
        check_data(replay_config.replace(replay_file=str(tmp_path / "missing.xyz")))
    with pytest.raises(DataError, match=r"replay_samples=100000 but the replay data hold only \d+ configurations"):
        check_data(replay_config.replace(replay_samples=100000))


def test_fps_descriptors_are_cached_by_foundation_and_structures(smoke_inputs, tmp_path, monkeypatch):
    from trainables.core.replay import cached_structure_descriptors, descriptors_cache_path, structure_descriptors

    monkeypatch.setenv("OPTISTUDY_CACHE", str(tmp_path))
    items, foundation = read_labelled(smoke_inputs.sources.train)[:12], smoke_inputs.foundation()
    forwards = []
    foundation.register_forward_hook(lambda *_: forwards.append(1))
    first = cached_structure_descriptors(foundation, items)
    path = descriptors_cache_path(foundation, items)
    assert path.is_file() and path.is_relative_to(tmp_path) and forwards
    assert np.array_equal(first, structure_descriptors(foundation, items))
    forwards.clear()
    assert np.array_equal(cached_structure_descriptors(foundation, items), first) and not forwards  # read back
    moved = [dataclasses.replace(item, atoms=item.atoms.copy()) for item in items]
    moved[3].atoms.positions[0, 0] += 0.01
    other = smoke_inputs.foundation()
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    assert len({path, descriptors_cache_path(foundation, moved), descriptors_cache_path(other, items)}) == 3
    path.write_bytes(b"half a file")  # unreadable: computed again and rewritten
    assert np.array_equal(cached_structure_descriptors(foundation, items), first) and forwards
    assert np.array_equal(np.load(path), first)
