"""Fine-tuning methods on the smoke system's real MACE models: frozen parameters stay
bit-identical and the rest move, LoRA starts at the foundation's predictions and exports a merged
plain MACE model, trainable parameters match a count by hand, bad settings say what is wrong."""

import re

import pytest
import torch

from trainables.core.config import FinetuneConfig
from trainables.core.data import build_graphs, make_loader, read_labelled
from trainables.core.foundation import load_foundation, save_model
from trainables.core.loss import LossWeights
from trainables.core.methods import METHODS, known_methods, resolve_method
from trainables.core.partial_training import adapt_model, exported_model, optimizer_groups, trainable_parameters
from trainables.core.training import train_epoch
from trainables.errors import ConfigError
from trainables.stages.finetune import run_finetune
from trainables.stages.inputs import inputs_for_mode, prepare_inputs

from test_replay import _predict  # energies and forces of a model on graphs, as the replay tests take them


@pytest.fixture(scope="module")
def method_config(smoke_config):
    return smoke_config.replace(epochs=1, replay_samples=6, replay_selection="random")


@pytest.fixture(scope="module")
def method_inputs(method_config):
    return prepare_inputs(method_config)


@pytest.fixture(scope="module")
def inputs_f64(method_config):
    return prepare_inputs(method_config.replace(dtype="float64"))


def _adapted(inputs, method: str, settings=None, seed=0):
    spec = resolve_method(method)
    return adapt_model(inputs.initial_model(), spec, spec.weights.settings(settings or {}), seed)


def test_every_entry_states_what_it_trains_and_its_defaults():
    for spec in METHODS.values():
        for key, value in spec.defaults.items():
            assert f"{key}={value}" in spec.trains, (spec.name, key)
        if not spec.defaults:
            assert "No settings" in spec.trains


def test_combinations_with_replay_follow_the_flags():
    assert known_methods() == [*METHODS, *(f"{n}+replay" for n, s in METHODS.items() if s.combines_with_replay)]
    for name in known_methods():
        method = resolve_method(name)
        assert method.replay == (name == "replay" or name.endswith("+replay"))
        assert method.mode == ("replay" if method.replay else "naive")


@pytest.mark.parametrize("name", known_methods())
def test_every_method_trains_only_its_parameters(name, method_config, method_inputs):
    """Frozen parameters (requires_grad off after adapting) are bit-identical after training; every
    trained tensor moved. LoRA's trained factors are merged on export: its base weights all move."""
    config = method_config.replace(method=name, lr=5e-3, max_steps=4)
    start = _adapted(inputs_for_mode(method_inputs, config.mode), name, seed=config.seed)
    result = run_finetune(config, method_inputs)
    assert result.status == "ok" and result.cost["trainable_params"] == trainable_parameters(start)
    trained = dict(result.model.named_parameters())
    frozen = {n for n, p in start.named_parameters() if not p.requires_grad}
    if resolve_method(name).weights.export is None:
        for n, p in start.named_parameters():
            assert torch.equal(p, trained[n]) == (n in frozen), n
    else:
        assert not any("lora" in n for n in result.model.state_dict())  # a plain MACE model


def test_freeze_counts_as_mace_counts(method_inputs):
    """layers 1: the embedding; 5: the interactions too; 6: the products too (readouts train)."""
    model = method_inputs.initial_model()
    by_hand = {
        1: sum(p.numel() for m in (model.interactions, model.products, model.readouts) for p in m.parameters()),
        5: sum(p.numel() for m in (model.products, model.readouts) for p in m.parameters()),
        6: sum(p.numel() for p in model.readouts.parameters()),
    }
    for layers, count in by_hand.items():
        assert trainable_parameters(_adapted(method_inputs, "freeze", {"layers": layers})) == count
    assert trainable_parameters(_adapted(method_inputs, "naive")) == sum(p.numel() for p in model.parameters())


def test_lora_trains_its_factors_only_and_counts_them(method_inputs):
    model = _adapted(method_inputs, "lora", {"rank": 2})
    factors = [m for m in model.modules() if hasattr(m, "lora_A")]
    by_hand = sum(t.numel() for m in factors for t in (
        (m.lora_A, m.lora_B) if isinstance(m.lora_A, torch.Tensor) else (*m.lora_A.parameters(), *m.lora_B.parameters())))
    assert factors and trainable_parameters(model) == by_hand
    assert trainable_parameters(_adapted(method_inputs, "lora", {"rank": 4})) > by_hand


def test_block_lr_gives_mace_blocks_their_factors_and_freezes_factor_zero(method_inputs):
    """Factors 0 on the embedding and interactions train what --freeze 5 trains, at the same lrs."""
    settings = {"embedding_lr_factor": 0.0, "interactions_lr_factor": 0.0, "readouts_lr_factor": 0.5}
    method = resolve_method("block_lr")
    model = _adapted(method_inputs, "block_lr", settings)
    groups = optimizer_groups(model, method, method.weights.settings(settings), lr=1e-3)
    assert {g["name"]: g["lr"] for g in groups} == {"products": 1e-3, "readouts": 5e-4}
    frozen = _adapted(method_inputs, "freeze", {"layers": 5})
    assert [n for n, p in model.named_parameters() if p.requires_grad] == \
        [n for n, p in frozen.named_parameters() if p.requires_grad]


def test_lora_at_initialisation_predicts_exactly_what_the_foundation_predicts(inputs_f64):
    graphs = inputs_f64.graphs["val"]
    for before, after in zip(_predict(inputs_f64.initial_model(), graphs), _predict(_adapted(inputs_f64, "lora"), graphs)):
        assert torch.equal(before, after)


def test_trained_lora_merged_export_predicts_the_unmerged_model_and_loads_in_mace(inputs_f64, tmp_path):
    from mace.calculators import MACECalculator

    method = resolve_method("lora")
    model = _adapted(inputs_f64, "lora", {"rank": 2})
    optimizer = torch.optim.Adam(optimizer_groups(model, method, {}, lr=1e-2), lr=1e-2)
    train_epoch(model, make_loader(inputs_f64.graphs["train"], 4, shuffle=False), optimizer, LossWeights(),
                torch.device("cpu"), clip_grad_norm=10.0)
    graphs = inputs_f64.graphs["val"]
    trained = _predict(model, graphs)
    merged = exported_model(model, method)
    assert not any("lora" in name for name in merged.state_dict())
    assert not torch.equal(_predict(inputs_f64.initial_model(), graphs)[1], trained[1])  # it did train
    for unmerged, exported in zip(trained, _predict(merged, graphs)):
        assert torch.allclose(unmerged, exported, rtol=1e-9, atol=1e-9)
    item = read_labelled(inputs_f64.sources.train)[0]
    energy = _predict(merged, build_graphs([item], inputs_f64.elements, float(merged.r_max), torch.float64))[0]
    atoms = item.atoms.copy()
    atoms.calc = MACECalculator(models=load_foundation(save_model(merged, tmp_path / "lora.pt")), device="cpu",
                                default_dtype="float64")
    assert atoms.get_potential_energy() == pytest.approx(float(energy[0]), abs=1e-8)


def test_lora_start_depends_on_the_seed_alone(method_inputs):
    torch.manual_seed(123)
    first = _adapted(method_inputs, "lora", seed=3).state_dict()
    torch.rand(10)
    second = _adapted(method_inputs, "lora", seed=3).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = _adapted(method_inputs, "lora", seed=4).state_dict()
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_one_set_of_inputs_serves_both_data_modes(method_config, method_inputs):
    """Replay on naive-prepared inputs (the mode view) gives what replay-prepared inputs give."""
    replay = method_config.replace(method="replay", max_steps=3)
    prepared = prepare_inputs(replay)
    viewed = inputs_for_mode(method_inputs, "replay")
    assert viewed.heads == prepared.heads and len(viewed.graphs["train"]) == len(prepared.graphs["train"])
    assert [int(g.head) for g in viewed.graphs["train"]] == [int(g.head) for g in prepared.graphs["train"]]
    ours, theirs = run_finetune(replay, method_inputs), run_finetune(replay, prepared)
    assert ours.scores["val"] == pytest.approx(theirs.scores["val"], rel=1e-6)
    assert inputs_for_mode(prepared, "naive").graphs["train"] and \
        len(inputs_for_mode(prepared, "naive").graphs["train"]) == len(method_inputs.graphs["train"])


def test_an_older_mode_names_the_method_and_follows_it():
    config = FinetuneConfig.from_dict({"mode": "replay", "replay_samples": 5})
    assert (config.method, config.mode) == ("replay", "replay")
    assert (config.replace(method="lora", compile=False).mode, config.replace(method="freeze+replay").mode) == \
        ("naive", "replay")


@pytest.mark.parametrize("values, message", [
    ({"method": "adapter"}, "unknown method 'adapter'; known: naive, replay, freeze, block_lr, lora"),
    ({"method": "naive+replay"}, "'naive' does not combine with 'replay'"),
    ({"method": "lora", "compile": False, "method_settings": {"lora": {"rank": 0}}}, "rank must be an integer >= 1"),
    ({"method": "lora", "compile": False, "method_settings": {"lora": {"rank": 2.5}}}, "rank must be int, got 2.5"),
    ({"method": "lora", "compile": False, "method_settings": {"lora": {"alpha": -1.0}}}, "alpha must be positive"),
    ({"method": "lora"}, "runs eagerly (the compiled step has no LoRA layers): set compile = false"),
    ({"method": "freeze", "method_settings": {"freeze": {"layers": 7}}}, "layers must be in 1..6"),
    ({"method_settings": {"block_lr": {"readouts_lr_factor": -1.0}}}, "lr factors must be >= 0"),
    ({"method_settings": {"freeze": {"blocks": 2}}}, "unknown setting(s) ['blocks']; known: ['layers']"),
    ({"method": "naive", "mode": "replay"}, "mode = 'replay' contradicts method = 'naive'"),
    ({"method": "lora+replay", "compile": False}, "needs replay_samples"),
])
def test_bad_method_config_is_a_config_error(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        FinetuneConfig.from_dict(values)
