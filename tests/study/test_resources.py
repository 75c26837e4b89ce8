"""Resources with Ray's logical resources: fractional GPUs pack trials, CPU trials see no GPU,
and cluster.yaml validates against Ray's own schema."""

import os
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml
from ray import tune

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def logical_gpus():
    """A local Ray with 16 logical CPUs and 4 logical GPUs (no GPU hardware needed)."""
    os.environ["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "1"
    # Ray workers cannot import this test module by name: ship its functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=16, num_gpus=4, include_dashboard=False, object_store_memory=128 * 1024**2,
             log_to_driver=False)
    yield
    ray.shutdown()


def _barrier_trainable(config):
    """Arrive, then wait until every trial of the experiment has arrived (so they ran at once)."""
    folder = Path(config["folder"])
    (folder / f"{config['i']}.arrived").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
    deadline = time.time() + 120
    while len(list(folder.glob("*.arrived"))) < config["n"] and time.time() < deadline:
        time.sleep(0.2)
    tune.report({"together": len(list(folder.glob("*.arrived")))})


def _run(tmp_path, n, resources):
    trainable = tune.with_resources(_barrier_trainable, resources)
    grid = tune.Tuner(trainable, param_space={"i": tune.grid_search(list(range(n))), "n": n, "folder": str(tmp_path)},
                      run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), verbose=0)).fit()
    return grid, {p.stem: p.read_text() for p in tmp_path.glob("*.arrived")}


def test_quarter_gpus_run_sixteen_trials_at_once(logical_gpus, tmp_path):
    grid, devices = _run(tmp_path, 16, {"cpu": 1, "gpu": 0.25})
    assert all(r.metrics["together"] == 16 for r in grid)
    per_gpu = {}
    for visible in devices.values():
        per_gpu[visible] = per_gpu.get(visible, 0) + 1
    assert sorted(per_gpu) == ["0", "1", "2", "3"] and set(per_gpu.values()) == {4}


def test_cpu_trials_see_no_gpu(logical_gpus, tmp_path):
    grid, devices = _run(tmp_path, 2, {"cpu": 1, "gpu": 0})
    assert set(devices.values()) == {""}, "a CPU trial must not see any GPU"


def test_cluster_yaml_validates_with_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0 and workers["max_workers"] >= 1
    assert any("scripts/setup.sh" in c for c in config["setup_commands"])
    config["available_node_types"]["gpu_worker"]["min_workers"] = "none"
    with pytest.raises(Exception, match="is not of type 'integer'"):
        validate_config(prepare_config(config))


def test_a_local_study_listens_on_loopback_only():
    import subprocess

    script = ("import subprocess, ray\nfrom study.cluster import init_ray\ninit_ray(None, num_cpus=1)\n"
              "print('node ip', ray.util.get_node_ip_address())\n"
              "print('gcs port', ray.get_runtime_context().gcs_address.rsplit(':', 1)[1])\n"
              "print(subprocess.run(['ss', '-ltn'], capture_output=True, text=True).stdout)\nray.shutdown()\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    lines = run.stdout.splitlines()
    assert "node ip 127.0.0.1" in lines, run.stderr[-2000:]
    port = next(line.split()[-1] for line in lines if line.startswith("gcs port"))
    gcs = [line.split()[3] for line in lines if line.startswith("LISTEN") and line.split()[3].endswith(f":{port}")]
    assert gcs and all("127.0.0.1" in address for address in gcs), gcs
