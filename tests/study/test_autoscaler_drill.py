"""Elastic scaling drilled with Ray's real autoscaler on this machine (Ray's fake multi-node provider,
`fake_cluster.yaml`): a head without CPUs for trials, a CPU and a fake-GPU worker type, both
with min_workers 0. A study sent to it, by a driver joining with --address and by `ray job submit`,
makes the autoscaler start workers; every trial finishes once, ok; the idle workers are removed
afterwards. The cluster is started and stopped by scripts/drills/fake_cluster.py (its own folder,
ports and token; no `ray stop`). Recipe: docs/autoscaler.md."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _drill_module():
    spec = importlib.util.spec_from_file_location("fake_cluster", ROOT / "scripts" / "drills" / "fake_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


drill = _drill_module()


def _dashboard_missing() -> str | None:
    from ray._private.utils import get_dashboard_dependency_error

    return get_dashboard_dependency_error()


@pytest.fixture(scope="module")
def fake_cluster(cache_root, smoke_inputs):
    """The fake autoscaling cluster, with Ray's dashboard (the job server) where ray[default] is
    installed. Its environment, and so the trials', holds this session's data cache; `python` on its
    PATH is this interpreter (the entrypoint of a submitted job)."""
    folder = Path(tempfile.mkdtemp(prefix="rayfake", dir="/tmp"))  # short: Ray's socket paths must fit
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONWARNINGS": "ignore"}
    cluster = drill.FakeCluster(folder).start(env=env)
    try:
        yield cluster
    finally:
        left = cluster.stop()
        if not left:
            shutil.rmtree(folder, ignore_errors=True)
        assert not left, f"processes of the fake cluster left running: {left}"


def _workers(nodes: list[dict]) -> list[dict]:
    return [node for node in nodes if not node["head"]]


def _wait_for_idle_removal(cluster, timeout: float = 180) -> list[dict]:
    """Until no worker node is alive (the autoscaler removed them, 6 s idle); returns the nodes."""
    deadline = time.time() + timeout
    while True:
        nodes = cluster.nodes()
        alive = [node for node in _workers(nodes) if node["alive"]]
        if not alive:
            return nodes
        if time.time() > deadline:
            raise AssertionError(f"idle workers not removed within {timeout} s: {alive}")
        time.sleep(2)


def _assert_scaled_out_and_in(cluster, before: list[dict], node_type: str, only: bool) -> None:
    """Workers of `node_type` (`only`: and of no other type) joined during the study, the autoscaler
    terminated every new worker (the study's once idle), and the head is alone again.

    Their number is not checked: workers may leave between the two trials' ends (6 s idle), and the
    autoscaler may launch one more than asked (a fake node counts as up before its raylet has
    registered, so the demand still looks unmet a second later), then remove it at once
    ("max_workers_per_type"), or put the demand left on another type that fits."""
    after = _wait_for_idle_removal(cluster)
    log = (cluster.logs_dir() / "monitor.log").read_text(errors="replace")
    events = [line.split(":event_summary:")[1] for line in log.splitlines() if ":event_summary:" in line]
    known = {node["id"] for node in before}
    new = [node for node in _workers(after) if node["id"] not in known]
    types = {node["type"] for node in new}
    assert node_type in types and (types == {node_type} or not only), (after, events)
    for node in new:  # its own death reason is "received SIGTERM" or the autoscaler's, whichever came first
        assert f"Terminating the node with id {node['id']} " in log, (node, events)
    assert any(f"Terminating the node with id {node['id']} and ip {node['id']}. (idle)" in log
               for node in new if node["type"] == node_type), events
    assert [node["id"] for node in after if node["alive"]] == [node["id"] for node in before if node["head"]]


def _assert_every_trial_once_ok(folder: Path) -> None:
    scores = pq.read_table(folder / "results" / "scores.parquet").to_pandas()
    assert (scores.status == "ok").all(), scores[scores.status != "ok"][["trial_id", "status", "error"]]
    assert not scores.duplicated(["trial_id", "stage", "test_set"]).any()
    trials = scores.drop_duplicates("trial_id")
    assert sorted(trials.optimizer) == ["adam", "schedulefree"] and set(trials.stage) == {"first_order"}


def _space(tmp_path: Path) -> Path:
    """The smoke space's first stage alone, as the study "drill" (its L-BFGS stage would only repeat
    the drill, slower): two trials that start at once, so that the autoscaler is asked for both."""
    smoke = (ROOT / "search_spaces" / "smoke.toml").read_text()
    first_stage = re.sub(r"(?m)^stages = .*$", 'stages = ["first_order"]', smoke)
    assert first_stage != smoke and 'optimizers = ["adam", "schedulefree"]' in smoke
    path = tmp_path / "drill.toml"
    path.write_text(first_stage)
    return path


def _before(cluster) -> list[dict]:
    nodes = cluster.nodes()
    assert [node["head"] for node in nodes if node["alive"]] == [True]  # min_workers 0: the head alone
    head = next(node for node in nodes if node["head"])
    assert not head["resources"].get("CPU"), head  # no trial can run on the head
    return nodes


@pytest.mark.slow
def test_autoscaler_starts_a_shared_gpu_worker_for_a_study_and_removes_it_idle(fake_cluster, tmp_path, launch_args):
    """Trials of half a (fake) GPU each: the autoscaler starts a gpu_worker (max_workers 1: both
    trials fit on it), and no cpu_worker (a trial needs a GPU)."""
    before = _before(fake_cluster)
    storage = tmp_path / "studies"
    command = launch_args(storage, "--address", fake_cluster.address, "--gpus-per-trial", "0.5",
                          space=str(_space(tmp_path)), local=False)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=fake_cluster.env())
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_every_trial_once_ok(storage / "drill")
    _assert_scaled_out_and_in(fake_cluster, before, "gpu_worker", only=True)


@pytest.mark.slow
@pytest.mark.skipif(_dashboard_missing() is not None, reason="`ray job submit` needs Ray's dashboard (the job "
                    "server): ray[default] is not installed")
def test_ray_job_submit_runs_a_study_on_the_autoscaling_cluster(fake_cluster, tmp_path):
    """`ray job submit -- python -m study.launch`: the driver runs on the head (no CPU), its CPU-only
    trials make the autoscaler start cpu_workers."""
    before = _before(fake_cluster)
    storage = tmp_path / "studies"
    submit = [*drill.RAY, "job", "submit", "--address", fake_cluster.dashboard, "--submission-id", "drill", "--",
              "python", "-m", "study.launch", "--space", str(_space(tmp_path)), "--storage", str(storage), "--quiet"]
    done = subprocess.run(submit, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=fake_cluster.env())
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Job 'drill' succeeded" in output
    assert "study drill: 2 trials" in output  # the driver's closing summary, streamed back by `ray job submit`
    _assert_every_trial_once_ok(storage / "drill")
    _assert_scaled_out_and_in(fake_cluster, before, "cpu_worker", only=False)
