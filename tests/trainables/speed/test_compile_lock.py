"""One compilation of a step per node: real processes, real file locks, a real compiled step."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainables.speed.compile_lock import first_compile_on_node, is_compiled_on_node, marker_folder, step_key

# A process that holds the lock until told to let go (a file appears) or for at most `hold` seconds:
# it writes when it got in and when it left.
HOLDER = """
import json, sys, time
from pathlib import Path
from trainables.speed.compile_lock import first_compile_on_node
key, out, hold = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
with first_compile_on_node(key, progress=lambda line: print(line, flush=True)):
    entered = time.time()
    out.with_suffix(".entered").write_text("")
    while time.time() < entered + hold and not out.with_suffix(".release").exists():
        time.sleep(0.1)
out.write_text(json.dumps({"entered": entered, "left": time.time()}))
"""

def _start(key: str, out: Path, hold: float, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-c", HOLDER, key, str(out), str(hold)], env=env,
                            stdout=subprocess.PIPE, text=True)


def _wait_for(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(folder))
    return folder


def test_the_second_process_waits_for_the_first_and_a_later_one_does_not_wait(cache, tmp_path):
    first = _start("step", tmp_path / "first.json", 120.0, cache)
    _wait_for(tmp_path / "first.entered")
    second = _start("step", tmp_path / "second.json", 0.0, cache)
    assert "waiting to load it from the compiler cache" in second.stdout.readline()
    (tmp_path / "first.release").write_text("")
    second.communicate(timeout=120)
    first.communicate(timeout=120)
    assert first.returncode == second.returncode == 0
    a, b = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("first", "second"))
    assert b["entered"] >= a["left"]  # it went in only once the first was done
    assert is_compiled_on_node("step")

    third = _start("step", tmp_path / "third.json", 0.0, cache)
    assert "waiting" not in third.communicate(timeout=120)[0] and third.returncode == 0


def test_other_steps_do_not_wait(cache, tmp_path):
    first = _start("step", tmp_path / "first.json", 600.0, cache)
    _wait_for(tmp_path / "first.entered")
    other = _start("another-step", tmp_path / "other.json", 0.0, cache)
    assert "waiting" not in other.communicate(timeout=120)[0] and other.returncode == 0
    assert first.poll() is None  # it was still compiling
    first.kill()
    first.wait()


def test_a_killed_compiler_releases_the_lock_and_marks_nothing(cache, tmp_path):
    first = _start("step", tmp_path / "first.json", 600.0, cache)
    _wait_for(tmp_path / "first.entered")
    first.kill()  # SIGKILL: no clean-up runs
    first.wait()
    second = _start("step", tmp_path / "second.json", 0.0, cache)
    second.communicate(timeout=120)
    assert second.returncode == 0
    assert not (tmp_path / "first.json").exists() and (tmp_path / "second.json").exists()


def test_a_failed_compile_marks_nothing(cache):
    with pytest.raises(RuntimeError):
        with first_compile_on_node("step"):
            raise RuntimeError("the compiler failed")
    assert not is_compiled_on_node("step")
    with first_compile_on_node("step"):
        pass
    assert is_compiled_on_node("step")
    assert marker_folder().parent == cache


def test_keys_ignore_memory_addresses_and_tell_graphs_apart():
    import torch

    assert step_key({"gate": torch.nn.functional.silu}) == step_key({"gate": torch.nn.functional.silu})
    assert step_key(repr(torch.nn.functional.silu).replace("0x", "0x1")) == step_key(repr(torch.nn.functional.silu))
    assert step_key({"gate": torch.nn.functional.silu}) != step_key({"gate": torch.nn.functional.tanh})


def test_a_compiled_training_step_marks_its_key_and_another_process_computes_the_same(smoke_inputs):
    """The real step, on the session's compiler cache: its first call leaves the marker, and the
    architecture part of the key (the model's config holds functions) is the same in a new process."""
    from trainables.core import data as D
    from trainables.core.training import forward
    from trainables.speed.compile_lock import step_key
    from trainables.speed.compiled import _architecture_key, training_modules

    model, view = training_modules(smoke_inputs.initial_model())
    batch = next(iter(D.make_loader(smoke_inputs.graphs["train"], 4, shuffle=False)))
    forward(view, batch, training=True)["energy"].sum().backward()
    assert view.compiled_keys and all(is_compiled_on_node(key) for key in view.compiled_keys.values())

    script = ("from trainables.speed.compiled import _architecture_key, eager_copy\n"
              "from trainables.speed.compile_lock import step_key\n"
              "from trainables.core.config import FinetuneConfig\n"
              "from trainables.stages.inputs import prepare_inputs\n"
              "model = eager_copy(prepare_inputs(FinetuneConfig(data_size='smoke')).initial_model())\n"
              "print(step_key(_architecture_key(model, device_type_only=True)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == step_key(_architecture_key(model, device_type_only=True))


def test_batches_past_inductors_long_reduction_size_are_a_variant_of_their_own():
    import torch

    from trainables.speed.compiled import LONG_REDUCTION_EDGES, call_signature

    def signature(edges, **options):
        return call_signature(({"edge_index": torch.zeros(2, edges, dtype=torch.long)},), options)

    assert signature(10, training=True) == signature(LONG_REDUCTION_EDGES, training=True)
    assert signature(10, training=True) != signature(LONG_REDUCTION_EDGES + 1, training=True)
    assert signature(10, training=True) != signature(10, training=False)


def test_without_flock_every_process_compiles_for_itself(cache, monkeypatch):
    """Windows has no fcntl: the step is compiled and marked as if there were no lock (nobody waits,
    even beside a holder of the lock)."""
    from trainables import files

    monkeypatch.setattr(files, "fcntl", None)
    with first_compile_on_node("step", progress=pytest.fail):
        with first_compile_on_node("step", progress=pytest.fail):
            pass
    assert is_compiled_on_node("step")
