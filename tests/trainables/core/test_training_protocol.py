"""The protocol options, the same for every optimizer: lr schedules with warm-up, mace's plateau
schedule, an EMA of the weights; how they reach ScheduleFree; checkpoints that resume them."""

import math

import pytest
import torch

from trainables.core.config import FinetuneConfig
from trainables.core.foundation import load_foundation
from trainables.core.optimizers import get_optimizer_spec
from trainables.core.schedules import LrSchedule, Plateau, lr_factor, make_schedule, validation_loss, warmup_hyper
from trainables.core.training import evaluate
from trainables.errors import ConfigError
from trainables.stages.finetune import MODEL_FILE, STATE_FILE, loss_weights, run_finetune, scoring_loader


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _optimizer(smoke_inputs, name="adam", lr=1e-3, **hyper):
    return get_optimizer_spec(name).build(smoke_inputs.initial_model().parameters(), lr=lr, **hyper)


def _lrs(schedule, steps):
    """The lr of each of `steps` optimizer steps."""
    lrs = []
    for _ in range(steps):
        lrs.append(schedule.lr())
        schedule.step()
    return lrs


def test_cosine_with_warmup_sets_the_expected_lr_at_chosen_steps(smoke_config, smoke_inputs):
    """W = 4 warm-up steps of T = 12: lr/4, 2lr/4, .., lr at step 3, then (1 + cos(pi u)) / 2 over 8 steps."""
    optimizer = _optimizer(smoke_inputs)
    config = smoke_config.replace(schedule="cosine", warmup_steps=4)
    lrs = _lrs(make_schedule(optimizer, config, 12, get_optimizer_spec("adam")), 13)
    expected = {0: 0.25e-3, 1: 0.5e-3, 3: 1e-3, 4: 1e-3, 6: 1e-3 * (1 + math.cos(math.pi / 4)) / 2, 8: 0.5e-3, 12: 0.0}
    assert {step: lrs[step] for step in expected} == pytest.approx(expected, abs=1e-15)
    assert lrs[4:] == sorted(lrs[4:], reverse=True)


def test_constant_schedule_warms_up_then_holds(smoke_config, smoke_inputs):
    spec = get_optimizer_spec("adam")
    assert _lrs(make_schedule(_optimizer(smoke_inputs), smoke_config, 12, spec), 13) == [1e-3] * 13
    assert [lr_factor(step, "constant", 12, 3) for step in (0, 1, 2, 3, 11)] == pytest.approx([1 / 3, 2 / 3, 1, 1, 1])


def test_schedulefree_takes_the_warmup_in_its_constructor_and_no_decay(smoke_config, smoke_inputs):
    """The flags, not the name: `warmup_argument` gets the warm-up, `supports_schedule` False keeps the lr."""
    spec = get_optimizer_spec("schedulefree")
    optimizer = _optimizer(smoke_inputs, "schedulefree", lr=5e-3, **warmup_hyper(spec, 37))
    assert optimizer.param_groups[0]["warmup_steps"] == 37
    for schedule in ("cosine", "plateau", "constant"):
        config = smoke_config.replace(optimizer="schedulefree", schedule=schedule, warmup_steps=37)
        lr_schedule = make_schedule(optimizer, config, 100, spec)
        for loss in (1.0, 2.0, 3.0):
            lr_schedule.observe_validation(loss)
        assert _lrs(lr_schedule, 101) == [5e-3] * 101
    assert warmup_hyper(get_optimizer_spec("adam"), 37) == {}


def test_plateau_follows_torchs_reduce_lr_on_plateau(smoke_inputs):
    """The scale rule against torch's ReduceLROnPlateau (mace's scheduler), on one loss sequence."""
    losses = [1.0, 0.9, 0.95, 0.9, 0.91, 0.8, 0.8, 0.80001, 0.85, 0.7, 0.71, 0.72, 0.73, 0.74]
    ours = LrSchedule(_optimizer(smoke_inputs), lambda step: 1.0, Plateau(factor=0.8, patience=2))
    reference_optimizer = _optimizer(smoke_inputs)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(reference_optimizer, factor=0.8, patience=2)
    for loss in losses:
        ours.observe_validation(loss)
        reference.step(loss)
        assert ours.lr() == pytest.approx(reference_optimizer.param_groups[0]["lr"], rel=1e-12)
    assert ours.lr() == pytest.approx(1e-3 * 0.8**3)  # three runs of more than 2 validations without a gain


def test_a_plateau_run_lowers_the_lr_after_patience_validations(smoke_config, smoke_inputs):
    """With patience 0 every epoch whose validation loss does not improve multiplies the lr by 0.5."""
    config = smoke_config.replace(epochs=4, lr=2e-2, schedule="plateau", plateau_patience=0, plateau_factor=0.5)
    result = run_finetune(config, smoke_inputs)
    plateau, expected = Plateau(factor=0.5, patience=0), []
    for record in result.records:
        plateau.observe(validation_loss({k[4:]: v for k, v in record.items() if k.startswith("val_")},
                                        loss_weights(config)))
        expected.append(config.lr * plateau.scale)
    assert [r["scheduled_lr"] for r in result.records] == pytest.approx(expected, rel=1e-12)


def test_ema_weights_are_validated_saved_and_scored_not_the_raw_ones(smoke_config, smoke_inputs, tmp_path):
    config = smoke_config.replace(epochs=2, ema_decay=0.9)

    def checkpoint_at_the_end(record, write_checkpoint):
        if record["epoch"] == config.epochs:
            write_checkpoint(tmp_path)

    result = run_finetune(config, smoke_inputs, on_epoch=checkpoint_at_the_end)
    raw = smoke_inputs.initial_model()
    raw.load_state_dict(torch.load(tmp_path / STATE_FILE, weights_only=True)["model"])
    assert not torch.equal(_weights(raw), _weights(result.model))
    assert torch.equal(_weights(load_foundation(tmp_path / MODEL_FILE)), _weights(result.model))
    val = scoring_loader(smoke_inputs.graphs["val"], config)
    scored = result.scores["val"]["force_rmse_mev_a"]
    assert evaluate(result.model, val, torch.device("cpu"))["force_rmse_mev_a"] == pytest.approx(scored, rel=1e-6)
    assert evaluate(raw, val, torch.device("cpu"))["force_rmse_mev_a"] != pytest.approx(scored, rel=1e-6)
    assert result.records[-1]["val_force_rmse_mev_a"] == pytest.approx(scored, rel=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "schedulefree"])
def test_the_ema_leaves_training_unchanged(smoke_config, smoke_inputs, tmp_path, optimizer):
    """The average only watches: a run's training weights (ScheduleFree's too, whose eval weights it
    averages) and optimizer state are bit for bit those of the run without it."""
    def final_state(config, folder):
        def write(record, write_checkpoint):
            if record["epoch"] == config.epochs:
                write_checkpoint(folder)

        folder.mkdir()
        run_finetune(config, smoke_inputs, on_epoch=write)
        return torch.load(folder / STATE_FILE, weights_only=True)

    config = smoke_config.replace(epochs=2, optimizer=optimizer)
    plain, averaged = final_state(config, tmp_path / "plain"), final_state(config.replace(ema_decay=0.9), tmp_path / "ema")
    assert averaged["weight_average"] is not None
    for name, value in plain["model"].items():
        assert torch.equal(value, averaged["model"][name]), name
    for key, state in plain["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(averaged["optimizer"]["state"][key][name])), name


class Crash(Exception):
    pass


@pytest.mark.parametrize("protocol", [
    {"schedule": "cosine", "warmup_steps": 3, "ema_decay": 0.9},
    {"schedule": "plateau", "plateau_patience": 0, "plateau_factor": 0.5, "lr": 2e-2, "ema_decay": 0.9},
])
def test_resume_restores_the_average_and_the_schedule_bit_for_bit(smoke_config, smoke_inputs, tmp_path, protocol):
    config = smoke_config.replace(epochs=3, **protocol)
    full = run_finetune(config, smoke_inputs)

    def crash_after_first(record, write_checkpoint):
        if record["epoch"] == 1:
            write_checkpoint(tmp_path)
            raise Crash  # the same config to the end: the cosine's length depends on the budget

    with pytest.raises(Crash):
        run_finetune(config, smoke_inputs, on_epoch=crash_after_first)
    resumed = run_finetune(config, smoke_inputs, resume_from=tmp_path)
    assert torch.equal(_weights(resumed.model), _weights(full.model))
    assert [r["scheduled_lr"] for r in resumed.records] == [r["scheduled_lr"] for r in full.records]
    assert resumed.scores["val"] == full.scores["val"]


@pytest.mark.parametrize("changes, message", [
    ({"schedule": "linear"}, r"schedule must be one of \('constant', 'cosine', 'plateau'\)"),
    ({"ema_decay": 1.0}, r"ema_decay must be in \[0, 1\)"),
    ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
    ({"plateau_factor": 1.0}, r"plateau_factor must be in \(0, 1\)"),
    ({"plateau_patience": -1}, "plateau_patience must be >= 0"),
    ({"optimizer": "schedulefree", "warmup_steps": 5, "optimizer_kwargs": {"warmup_steps": 5}},
     "optimizer 'schedulefree' takes the warm-up as 'warmup_steps': give warmup_steps or that hyper-parameter"),
])
def test_bad_protocol_settings_are_one_line_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig.from_dict(changes)
