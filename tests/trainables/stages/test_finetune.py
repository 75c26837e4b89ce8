"""The fine-tuning loop: determinism, divergence, resume, cosine schedule."""

import torch

from trainables.stages.finetune import run_finetune


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_same_seed_same_weights_different_seed_different(smoke_config, smoke_inputs):
    a = run_finetune(smoke_config.replace(seed=1), smoke_inputs)
    b = run_finetune(smoke_config.replace(seed=1), smoke_inputs)
    c = run_finetune(smoke_config.replace(seed=2), smoke_inputs)
    assert torch.equal(_weights(a.model), _weights(b.model))
    assert not torch.equal(_weights(a.model), _weights(c.model))


def test_divergence_is_a_status_not_an_exception(smoke_config, smoke_inputs):
    result = run_finetune(smoke_config.replace(optimizer="sgd", lr=1e4, clip_grad_norm=None, epochs=3), smoke_inputs)
    assert result.status == "diverged"
    assert result.scores == {}
    for record in result.records:
        assert all(v == v for v in record.values())  # only finite epochs are recorded


def test_resume_continues_bit_for_bit(smoke_config, smoke_inputs, tmp_path):
    config = smoke_config.replace(epochs=2, optimizer="schedulefree")
    full = run_finetune(config, smoke_inputs)

    def stop_after_first(record, write_checkpoint):
        if record["epoch"] == 1:
            write_checkpoint(tmp_path)

    first = run_finetune(config.replace(epochs=1), smoke_inputs, on_epoch=stop_after_first)
    resumed = run_finetune(config, smoke_inputs, resume_from=tmp_path)
    assert resumed.steps == full.steps
    assert (full.resumed_from_step, resumed.resumed_from_step) == (0, first.steps)
    assert [r["epoch"] for r in resumed.records] == [1, 2]
    assert torch.allclose(_weights(resumed.model), _weights(full.model), atol=1e-6)


def test_max_steps_budget_and_cosine_schedule(smoke_config, smoke_inputs):
    result = run_finetune(smoke_config.replace(max_steps=3, epochs=50, schedule="cosine"), smoke_inputs)
    assert result.status == "ok" and result.steps == 3


def test_periodic_fallback_system_trains_with_stress(smoke_config, cache_root):
    """The EMT fallback (periodic Cu3Au, no tblite needed) fine-tunes with the stress term of Eq. 1."""
    from trainables.stages.inputs import prepare_inputs

    config = smoke_config.replace(system="cu3au-emt", stress_weight=1.0, epochs=3, mode="naive",
                                  replay_samples=None)
    inputs = prepare_inputs(config)
    assert inputs.has_stress and set(inputs.test_names) >= {"slab", "vacancy"}
    result = run_finetune(config, inputs)
    assert result.status == "ok" and result.records[-1]["loss"] < result.records[0]["loss"]
    assert set(result.scores) >= {"300K", "1200K", "slab", "vacancy"}


def test_validation_within_epochs_leaves_training_unchanged(smoke_config, smoke_inputs):
    """`val_every_steps` adds curve points within epochs (reported without a checkpoint); the weights
    come out bit for bit the same, and each point splits its wall time into training, compile, validation."""
    plain = run_finetune(smoke_config.replace(epochs=2), smoke_inputs)
    reported = []
    dense = run_finetune(smoke_config.replace(epochs=2, val_every_steps=2), smoke_inputs,
                         on_epoch=lambda record, write: reported.append((record["steps"], write is None)))
    assert torch.equal(_weights(dense.model), _weights(plain.model))
    per_epoch = plain.steps // 2
    epoch_ends = [per_epoch, 2 * per_epoch]
    assert [steps for steps, _ in reported] == sorted({*range(2, 2 * per_epoch + 1, 2), *epoch_ends})
    assert [no_checkpoint for steps, no_checkpoint in reported] == [s not in epoch_ends for s, _ in reported]
    assert [r["steps"] for r in dense.records] == [steps for steps, _ in reported]
    assert [r["epoch"] for r in dense.records] == [steps / per_epoch for steps, _ in reported]
    for record in dense.records:
        assert 0 < record["train_time_s"] <= record["wall_time_s"] and record["compile_time_s"] == 0.0


def test_compile_aside_takes_eager_steps_and_ends_its_second_process(smoke_config, smoke_inputs, tmp_path,
                                                                     monkeypatch):
    """On a cold compiler cache, `compile_aside` trains eagerly while a second process compiles: a
    short run ends before it, with the eager run's weights (to float rounding), and stops it."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    config = smoke_config.replace(epochs=1, max_steps=3)
    aside = run_finetune(config.replace(compile=True, compile_aside=True), smoke_inputs)
    eager = run_finetune(config.replace(compile=False), smoke_inputs)
    assert aside.status == eager.status == "ok" and aside.steps == eager.steps == 3
    assert aside.compile_time_s < 1.0  # nothing compiled in this process: the steps and scores ran eagerly
    torch.testing.assert_close(_weights(aside.model), _weights(eager.model), rtol=1e-4, atol=1e-6)
    assert not _children_running("trainables.speed.background_compile")


def _children_running(module: str) -> list[int]:
    """This process's child processes whose command line names `module`."""
    import os
    from pathlib import Path

    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and module in command:
            found.append(int(proc.name))
    return found
