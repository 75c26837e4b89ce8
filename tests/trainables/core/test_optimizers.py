"""The optimizer registry: every entry fine-tunes a real MACE model; unknown names are rejected."""


import pytest
import torch

from trainables.core.config import FinetuneConfig
from trainables.core.data import make_loader
from trainables.core.foundation import finetune_model
from trainables.core.optimizers import OPTIMIZERS, get_optimizer_spec
from trainables.core.training import full_loss
from trainables.errors import ConfigError
from trainables.stages.finetune import loss_weights, run_finetune

LR = {"sgd": 5e-3}
EPOCHS = 4


def test_registry_holds_the_papers_seven_and_sgd_with_momentum():
    assert set(OPTIMIZERS) == {"sgd", "sgd_momentum", "adam", "adamw", "radam", "lamb", "ranger", "schedulefree"}
    for spec in OPTIMIZERS.values():
        assert "P_t" in spec.preconditioner


def test_unknown_optimizer_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown optimizer .adamax.; known: sgd, sgd_momentum, adam"):
        FinetuneConfig.from_dict({"optimizer": "adamax"})


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_lowers_the_training_loss(name, smoke_config, smoke_inputs):
    config = smoke_config.replace(optimizer=name, lr=LR.get(name, 1e-3), epochs=EPOCHS)
    loader = make_loader(smoke_inputs.graphs["train"], 16, shuffle=False)
    start = finetune_model(smoke_inputs.foundation(), smoke_inputs.elements, smoke_inputs.e0s, torch.float32)
    before = full_loss(start, loader, loss_weights(config), torch.device("cpu"))
    result = run_finetune(config, smoke_inputs)
    after = full_loss(result.model, loader, loss_weights(config), torch.device("cpu"))
    assert result.status == "ok"
    assert after < before, f"{name}: loss {before:.4g} -> {after:.4g}"
    assert len(result.records) == EPOCHS and set(result.scores) >= {"val", *smoke_inputs.test_names}


def test_train_eval_modes_flag_is_what_schedulefree_needs():
    flagged = {name for name, spec in OPTIMIZERS.items() if spec.has_train_eval_modes}
    assert flagged == {"schedulefree"}
    assert not get_optimizer_spec("schedulefree").supports_schedule


def test_adding_an_optimizer_is_one_entry(smoke_config, smoke_inputs):
    from trainables.core.optimizers import OptimizerSpec, register

    register(OptimizerSpec(name="adagrad", factory=torch.optim.Adagrad, preconditioner="P_t = diag(sum g^2)^-1/2"))
    try:
        result = run_finetune(smoke_config.replace(optimizer="adagrad", epochs=1), smoke_inputs)
        assert result.status == "ok"
    finally:
        del OPTIMIZERS["adagrad"]


def test_adamw_differs_from_adam_by_its_default_decoupled_weight_decay(smoke_config, smoke_inputs):
    assert get_optimizer_spec("adamw").build([torch.nn.Parameter(torch.zeros(2))], lr=1e-3).defaults[
        "weight_decay"] == 1e-2
    adam = run_finetune(smoke_config.replace(optimizer="adam", epochs=1), smoke_inputs)
    adamw = run_finetune(smoke_config.replace(optimizer="adamw", epochs=1), smoke_inputs)
    same = run_finetune(smoke_config.replace(optimizer="adamw", weight_decay=0.0, epochs=1), smoke_inputs)
    weights = [torch.cat([p.detach().flatten() for p in r.model.parameters()]) for r in (adam, adamw, same)]
    assert not torch.equal(weights[0], weights[1])
    assert torch.equal(weights[0], weights[2])
