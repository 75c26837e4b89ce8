"""Fault drills with real Ray: a node removed mid-study, the driver killed and resumed, a trial
that raises and one that diverges. Every trial ends with its rows written exactly once."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]


def _table(folder: Path, name: str):
    path = folder / "results" / f"{name}.parquet"
    return pq.read_table(path).to_pandas() if path.is_file() else None


def _wait_for_curves(folder: Path, rows: int, trials: int = 1, timeout: float = 300, log: Path | None = None) -> None:
    """Until the curves table holds `rows` rows from at least `trials` trials; the failure quotes the
    end of the driver's `log`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        curves = _table(folder, "curves")
        if curves is not None and len(curves) >= rows and curves.trial_id.nunique() >= trials:
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.is_file() else ""
    raise AssertionError(f"no {rows} curve rows of {trials} trial(s) within {timeout} s\n{tail}")


def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "drill.toml"
    path.write_text(text)
    return path


SLOW_SPACE = """
optimizers = ["adam", "sgd"]
lrs = [1e-3]
seeds = [0, 1]
[fixed]
data_size = "smoke"
epochs = 6
batch_size = 4
compile = false  # the drills are about faults; a cold compile would only slow them
"""


def _assert_complete(folder: Path, trials: int, test_sets: int = 6, epochs: int = 6) -> None:
    scores = _table(folder, "scores")
    assert scores.trial_id.nunique() == trials
    assert len(scores) == trials * test_sets
    assert not scores.duplicated(["trial_id", "stage", "test_set"]).any()
    curves = _table(folder, "curves")
    assert not curves.duplicated(["trial_id", "stage", "step"]).any()
    for trial_id in scores[scores.status == "ok"].trial_id.unique():  # every epoch's curve point, once
        assert sorted(curves[curves.trial_id == trial_id].step) == list(range(1, epochs + 1)), trial_id


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> dict[int, str]:
    """pid -> command of every process below `pid`."""
    children, found, todo = _children(), {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = _command(child) or "?"
            todo.append(child)
    return found


def _command(pid: int) -> str | None:
    """The process's command, or None once it has exited (a zombie counts as exited)."""
    try:
        if (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split() or ["Z"])[0] == "Z":
            return None
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


def _alive_after(processes: dict[int, str], seconds: float) -> dict[int, str]:
    """Those of `processes` still running `seconds` from now (returns as soon as none is)."""
    deadline = time.time() + seconds
    while True:
        alive = {pid: command for pid, command in processes.items() if _command(pid) == command}
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.5)


def test_driver_killed_then_resumed(cache_root, smoke_inputs, tmp_path, launch, launch_args):
    space = _space(tmp_path, SLOW_SPACE)
    storage = tmp_path / "studies"
    command = launch_args(storage, "--name", "drill", "--max-concurrent", "1", "--checkpoint-every", "0",
                          space=str(space))
    log = tmp_path / "driver.log"
    with open(log, "wb") as out:
        driver = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    folder = storage / "drill"
    _wait_for_curves(folder, rows=8, log=log)  # the first trial done, the second under way
    ray_processes = _descendants(driver.pid)  # the local Ray the driver started: GCS, raylet, agents, trial workers
    assert any("ImplicitFunc" in command for command in ray_processes.values()), ray_processes
    os.kill(driver.pid, signal.SIGKILL)  # the driver alone, as the OOM killer would; Ray's processes are left to Ray
    driver.wait()
    try:
        workers = {pid: c for pid, c in ray_processes.items() if "ImplicitFunc" in c or "_InputsMailbox" in c}
        assert not _alive_after(workers, 30), "the killed driver's trial workers kept running"
        before = _table(folder, "scores")
        finished = set(before.trial_id) if before is not None else set()
        assert finished, "the first trial should have finished before the kill"

        resumed = launch(storage, "--name", "drill", "--resume", space=str(space))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        # Ray's agents wait for their GCS to come back (about 60 s) before they exit
        assert not _alive_after(ray_processes, 120), "processes of the killed driver's Ray were left behind"
    finally:
        for pid, command in ray_processes.items():
            if _command(pid) == command:
                os.kill(pid, signal.SIGKILL)
    _assert_complete(folder, trials=4)
    after = _table(folder, "scores").set_index(["trial_id", "test_set"])
    for row in before.itertuples():  # finished trials were not rerun: their rows are unchanged
        assert after.loc[(row.trial_id, row.test_set), "wall_time_s"] == row.wall_time_s
    restarted = set(after[after.resumed_from_step > 0].reset_index().trial_id)
    assert not restarted & finished  # only the trial under way may go on from a checkpoint (if Tune's saved state had one)


def test_node_removed_mid_study_loses_no_trial(cache_root, smoke_inputs, tmp_path, launch_args):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        first = cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        storage = tmp_path / "studies"
        command = launch_args(storage, "--name", "elastic", "--address", cluster.address, "--checkpoint-every", "0",
                              space=str(_space(tmp_path, SLOW_SPACE)), local=False)
        driver = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_curves(storage / "elastic", rows=2, trials=2)  # both running trials have a checkpoint
        cluster.remove_node(first)          # a node dies: its trial restarts from its checkpoint
        cluster.add_node(num_cpus=1)        # and a node joins
        out, err = driver.communicate(timeout=600)
        assert driver.returncode == 0, err[-3000:]
        _assert_complete(storage / "elastic", trials=4)
        scores = _table(storage / "elastic", "scores")
        assert (scores.status == "ok").all()
        assert (scores.resumed_from_step > 0).any()  # the lost trial went on from its checkpoint, not from step 0
    finally:
        cluster.shutdown()


def test_raising_and_diverging_trials_are_recorded(cache_root, smoke_inputs, tmp_path, launch):
    space = _space(tmp_path, """
optimizers = ["sgd", "adam"]
lrs = [1e4]
seeds = [0]
[fixed]
data_size = "smoke"
epochs = 2
batch_size = 4
compile = false
[hyper.adam]
capturable = true  # passes the launch's check (the optimizer builds), raises at the first step on a CPU
""")
    done = launch(tmp_path / "studies", "--name", "faults", "--max-failures", "1", space=str(space))
    assert done.returncode == 0, done.stderr[-3000:]
    scores = _table(tmp_path / "studies" / "faults", "scores").drop_duplicates("trial_id").set_index("optimizer")
    assert scores.loc["sgd", "status"] == "diverged"
    assert scores.loc["adam", "status"] == "error"
    assert "capturable" in scores.loc["adam", "error"]
    assert "adam lr=10000 seed=0: error" in done.stdout
