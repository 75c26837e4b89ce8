"""Eager steps while a second process compiles the step: the same losses as eager training, a switch
to the compiled step once the process is done, which then loads the step instead of compiling it."""

import itertools
import time

import pytest
import torch
from torch._dynamo.utils import counters

from trainables.core import data as D
from trainables.core.loss import eq1_loss
from trainables.core.training import forward
from trainables.speed.background_compile import EagerUntilCompiled
from trainables.speed.compiled import eager_copy
from trainables.stages.finetune import loss_weights

WAIT_S = 900.0  # for the second process's compile, on a loaded two-core machine


def _sgd_losses(step_model, model, batches, weights) -> list[float]:
    """Losses of plain SGD steps through `step_model` on `model`'s parameters."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    losses = []
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = eq1_loss(batch, forward(step_model, batch, training=True), weights)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses


def _steps_until_switched(step, model, loader, weights, after: int = 2) -> tuple[list, list[float]]:
    """Batches stepped (plain SGD) through `step` until `after` steps past its switch to the compiled
    step, and their losses."""
    optimizer, used, losses = torch.optim.SGD(model.parameters(), lr=1e-3), [], []
    deadline = time.monotonic() + WAIT_S
    for batch in itertools.cycle(loader):
        optimizer.zero_grad(set_to_none=True)
        loss = eq1_loss(batch, forward(step, batch, training=True), weights)
        loss.backward()
        optimizer.step()
        used.append(batch)
        losses.append(float(loss))
        if step.switched_at is not None and len(used) >= step.switched_at + after - 1:
            return used, losses
        assert time.monotonic() < deadline, "the second process did not finish compiling"
        if step.switched_at is None:
            time.sleep(1.0)  # eager smoke steps are quick; leave the cores to the compile


@pytest.fixture
def fresh_compiler_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    return tmp_path / "inductor"


def test_eager_steps_then_the_compiled_step_loaded_from_the_second_process(smoke_config, smoke_inputs,
                                                                           fresh_compiler_cache):
    weights, initial = loss_weights(smoke_config), smoke_inputs.initial_model()
    loader = list(D.make_loader(smoke_inputs.graphs["train"], 4, shuffle=False))
    model = eager_copy(initial)
    step = EagerUntilCompiled(model, progress=lambda line: None)
    compiled_here = counters["inductor"]["fxgraph_cache_miss"], counters["aot_autograd"]["autograd_cache_miss"]
    batches, losses = _steps_until_switched(step, model, loader, weights)
    assert step.switched_at > 1  # the first step ran eagerly, while the second process compiled
    # this process loaded the step the second one compiled (forward and backward): no compile here
    assert (counters["inductor"]["fxgraph_cache_miss"], counters["aot_autograd"]["autograd_cache_miss"]) == compiled_here

    reference = eager_copy(initial)
    expected = _sgd_losses(reference, reference, batches, weights)
    assert losses == pytest.approx(expected, rel=1e-4)  # eager steps, then compiled ones: eager's numbers
    again = eager_copy(initial)
    on_warm_node = EagerUntilCompiled(again, progress=lambda line: None)
    # the first 40 steps: over a hundred (a loaded machine switches late) the compiled and eager
    # float orders drift apart, as any two float orders do over many steps
    assert _sgd_losses(on_warm_node, again, batches[:40], weights) == pytest.approx(expected[:40], rel=1e-4)
    assert on_warm_node.switched_at == 1  # the step is compiled on this node: no second process
