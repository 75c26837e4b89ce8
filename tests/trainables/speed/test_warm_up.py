"""Compiling the fine-tuning step beside pretraining: the untrained foundation gives the same compiled
graph as the pretrained one, and the second process runs, reports and cleans up."""

import dataclasses
import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mace.tools import compile as mace_compile

from trainables.core import data as D
from trainables.core.foundation import save_model
from trainables.core.training import forward
from trainables.embedded import build_system, default_system_name
from trainables.embedded import pretrain
from trainables.embedded.pretrain import PRETRAIN, embedded_foundation, untrained_foundation
from trainables.speed.compiled import _shallow_tree_copy, eager_copy
from trainables.speed.warm_up import WARM_STEPS, CompileWarmUp
from trainables.stages.inputs import WARM_COMPILE, prepare_inputs


@pytest.fixture(scope="module")
def untrained(smoke_files):
    files = build_system(default_system_name(), "smoke")
    torch.manual_seed(0)
    return untrained_foundation(files.pretrain, files.e0s, PRETRAIN["smoke"])[0]


def _traced_step(config, foundation_path) -> str:
    """The code of the graphs Dynamo captures for one training forward pass (forces included) of
    the fine-tuning model that `config` builds on the foundation at `foundation_path`."""
    inputs = prepare_inputs(config.replace(foundation=str(foundation_path)))
    codes = []

    def record(graph_module, example_inputs):
        codes.append(graph_module.code)
        return graph_module.forward

    mace_compile.configure_autograd_for_compile(allow_autograd=True)
    torch._dynamo.reset()
    view = mace_compile.simplify(_shallow_tree_copy(eager_copy(inputs.initial_model())))
    batch = next(iter(D.make_loader(inputs.graphs["train"], 4, shuffle=False)))
    forward(torch.compile(view, backend=record, fullgraph=True, dynamic=True), batch, training=True)
    return "\n".join(codes)


def test_the_untrained_foundation_compiles_to_the_pretrained_ones_graph(smoke_config, smoke_files, untrained, tmp_path):
    config = smoke_config.replace(mode="replay", replay_samples=8)
    pretrained = _traced_step(config, smoke_files.foundation)
    assert pretrained and pretrained == _traced_step(config, save_model(untrained, tmp_path / "untrained.pt"))
    assert _traced_step(config.replace(mode="naive"), smoke_files.foundation) != pretrained  # one head, not two


def test_the_second_process_runs_the_steps_and_cleans_up(smoke_config, untrained):
    lines = []
    with CompileWarmUp(smoke_config, WARM_COMPILE, lines.append) as warm_up:
        warm_up.start(untrained)
    assert warm_up._side.running()  # the caller goes on while the process imports torch and runs
    assert lines[-1].startswith("pretraining done; going on while the second process compiles")
    warm_up.wait()
    assert lines[0].startswith("compiling the fine-tuning step in a second process")
    assert lines[-1].startswith("compiled the fine-tuning step beside pretraining")
    assert f"; {WARM_STEPS} steps, ok (compiled variants: 0); in " in lines[-1]  # smoke_config runs eagerly
    assert not warm_up.folder.exists()


def test_a_process_still_compiling_when_its_caller_exits_is_ended(smoke_config, untrained, tmp_path):
    """finish() leaves a running process to a thread; the caller's exit (atexit) ends it."""
    foundation = save_model(untrained, tmp_path / "untrained.pt")
    script = ("import torch\n"
              "from trainables.core.config import FinetuneConfig\n"
              "from trainables.core.foundation import load_foundation\n"
              "from trainables.speed.warm_up import CompileWarmUp\n"
              "from trainables.stages.inputs import WARM_COMPILE\n"
              f"config = FinetuneConfig.from_dict({smoke_config.to_dict()!r})\n"
              "warm_up = CompileWarmUp(config, WARM_COMPILE, lambda line: None)\n"
              f"warm_up.start(load_foundation({str(foundation)!r}))\n"
              "warm_up.finish()\n"
              "print(warm_up._side.pid, warm_up._side.running(), warm_up.folder)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    pid, was_running, folder = done.stdout.strip().splitlines()[-1].split()
    assert was_running == "True"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
    assert not Path(folder).exists()


def test_a_failing_second_process_is_reported_in_one_line(smoke_config, untrained):
    lines = []
    config = smoke_config.replace(mode="replay", replay_samples=10_000)  # more than the corpus holds
    with CompileWarmUp(config, WARM_COMPILE, lines.append) as warm_up:
        warm_up.start(untrained)
    warm_up.wait()
    assert "failed (exit 2" in lines[-1] and "error: replay_samples=10000" in lines[-1]
    assert lines[-1].endswith("the first trials compile it themselves")


def test_an_error_during_pretraining_stops_the_second_process(smoke_config, untrained):
    with pytest.raises(KeyboardInterrupt):
        with CompileWarmUp(smoke_config, WARM_COMPILE, lambda line: None) as warm_up:
            warm_up.start(untrained)
            raise KeyboardInterrupt
    assert warm_up._side.poll() is not None and not warm_up.folder.exists()


def test_pretraining_starts_the_warm_up_its_caller_gives(smoke_config, tmp_path, monkeypatch):
    """embedded_foundation knows no stage: the caller's warm-up (here the stages layer's own) is
    started on the untrained model and reports when its steps are compiled."""
    monkeypatch.setitem(pretrain.PRETRAIN, "smoke", dataclasses.replace(PRETRAIN["smoke"], warm_compile=True))
    files = build_system(default_system_name(), "smoke", cache_root=tmp_path, progress=lambda line: None)
    lines = []
    embedded_foundation(files, rebuild=True, progress=lines.append,
                        warm_up=functools.partial(CompileWarmUp, smoke_config, WARM_COMPILE))
    assert lines[0] == "compiling the fine-tuning step in a second process while the foundation pretrains"
    deadline = time.monotonic() + 300
    while not lines[-1].startswith("compiled the fine-tuning step") and time.monotonic() < deadline:
        time.sleep(1)
    assert lines[-1].startswith("compiled the fine-tuning step beside pretraining"), lines[-1]
