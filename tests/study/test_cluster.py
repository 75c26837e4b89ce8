"""study.cluster: a local Ray this process started is stopped, every process of it, by shutdown_ray."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os
from pathlib import Path
import ray
from study.cluster import init_ray, shutdown_ray

def descendants(pid):
    children = {}
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
        except (OSError, ValueError, IndexError):
            pass
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = (Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\\0", b" ").decode())
            todo.append(child)
    return found

init_ray(None, num_cpus=1)
ray.get(ray.remote(lambda: 1).remote())  # a worker process too
started = descendants(os.getpid())
shutdown_ray()
print(json.dumps({"started": started, "initialized": ray.is_initialized()}))
"""


def _running(pid: int, command: str) -> bool:
    """The process is still the one started (not exited, not a zombie, its pid not reused)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        now = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return state != "Z" and now == command


def test_shutdown_ray_stops_every_process_of_a_local_ray():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    started = {int(pid): command for pid, command in report["started"].items()}
    assert not report["initialized"]
    kinds = " ".join(started.values())
    for kind in ("gcs_server", "raylet", "autoscaler/_private/monitor.py", "log_monitor.py"):
        assert kind in kinds, f"{kind} not among the processes of the local Ray: {started}"
    deadline = time.time() + 30  # workers end on their own once their raylet is gone
    while (alive := {pid: c for pid, c in started.items() if _running(pid, c)}) and time.time() < deadline:
        time.sleep(0.5)
    assert not alive, f"left running after shutdown_ray: {alive}"


def test_a_local_ray_is_new_even_where_ray_start_recorded_a_cluster(tmp_path):
    """Ray's default joins the cluster that `ray start` last recorded in its temporary folder (a test's
    cluster on another pytest worker, or one long dead); a study without an address starts its own."""
    folder = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit
    try:
        (folder / "ray").mkdir()
        (folder / "ray" / "ray_current_cluster").write_text("127.0.0.1:9\n")  # nothing listens there
        script = ("import ray\nfrom study.cluster import init_ray, shutdown_ray\ninit_ray(None, num_cpus=1)\n"
                  "print('cpus', ray.cluster_resources()['CPU'])\nshutdown_ray()\n")
        env = {**os.environ, "RAY_TMPDIR": str(folder)}
        env.pop("RAY_ADDRESS", None)
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                             env=env, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "cpus 1.0" in run.stdout.splitlines()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
