"""Accident drills with real Ray: two launches of one study, Ctrl-C or SIGTERM at each stage of a
study, and a full or vanished storage disk. Each ends with one line that says what happened and, where a
study can go on, how; no row is lost or written twice."""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from test_faults import _alive_after, _descendants

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}


def _table(folder: Path, name: str):
    path = folder / "results" / f"{name}.parquet"
    return pq.read_table(path).to_pandas() if path.is_file() else None


def ctrl_c_as_in_a_terminal() -> None:
    """A driver's SIGINT as a terminal's shell leaves it (default). An ignored SIGINT is inherited
    and Python keeps it ignored: the suite started as a background job of a script (`cmd &`, nohup)
    passed that on to these drivers, which then ran a whole study through the Ctrl-C sent to them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(command: list[str], log: Path) -> subprocess.Popen:
    """A driver in its own process group (a terminal's Ctrl-C reaches the whole group), output to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=ENV, start_new_session=True, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=ctrl_c_as_in_a_terminal)


@contextmanager
def _running(command: list[str], log: Path):
    """`_start`'s driver, killed with its process group on leaving if it still runs."""
    driver = _start(command, log)
    try:
        yield driver
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)


def _ended_after(driver: subprocess.Popen, act) -> tuple[int, float]:
    """`act()` (a signal sent, a process killed), then the driver's exit status and the seconds it took to end."""
    sent = time.perf_counter()
    act()
    code = driver.wait(timeout=60)
    return code, time.perf_counter() - sent


def _wait_for(path: Path, driver: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert driver.poll() is None, f"the driver ended before {path} appeared\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, f"no {path} within {timeout} s\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


def _last_line(log: Path) -> str:
    return log.read_text(errors="replace").strip().splitlines()[-1]


def _assert_complete_once(folder: Path) -> None:
    """Both stages of the smoke space, every trial's scores and curve points exactly once."""
    scores, curves = _table(folder, "scores"), _table(folder, "curves")
    assert scores.groupby("stage").trial_id.nunique().to_dict() == {"first_order": 2, "lbfgs": 2}
    assert not scores.duplicated(["trial_id", "stage", "test_set"]).any()
    assert not curves.duplicated(["trial_id", "stage", "step"]).any()
    first = curves[curves.stage == "first_order"].groupby("trial_id").step.apply(sorted)
    assert all(steps == [1, 2] for steps in first)


# --- two launches of one study --------------------------------------------------------------------

def test_second_launch_of_a_running_study_fails_at_once_naming_the_holder(cache_root, smoke_inputs, tmp_path,
                                                                           launch, launch_args):
    storage, log = tmp_path / "studies", tmp_path / "first.log"
    first = _start(launch_args(storage), log)
    folder = storage / "smoke"
    try:
        _wait_for(folder / "manifest.json", first, log)
        manifest = (folder / "manifest.json").read_bytes()
        for extra in ([], ["--resume"]):
            start = time.perf_counter()
            second = launch(storage, *extra)
            assert second.returncode == 2, second.stderr[-3000:]
            last = second.stderr.strip().splitlines()[-1]
            assert last.startswith(f"error: study folder {folder} is in use by another launch (host "), last
            assert f"pid {first.pid}, started " in last
            assert time.perf_counter() - start < 30  # no Ray, no torch: the interpreter and the study's imports
        assert (folder / "manifest.json").read_bytes() == manifest
        assert first.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    _assert_complete_once(folder)
    assert not (folder / ".launch.lock").exists()
    again = launch(storage)  # the lock went with the first launch: the usual message about a finished study
    assert again.stderr.strip().splitlines()[-1].startswith(f"error: study folder {folder} already holds results")


def test_the_lock_of_a_killed_launch_is_not_stale(tmp_path):
    """flock dies with its holder: a launch killed with SIGKILL (the OOM killer) leaves the lock file
    with its details, and the next launch takes the lock and writes its own."""
    from study.lock import LOCK_NAME, StudyInUse, study_lock

    folder = tmp_path / "study"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from study.lock import study_lock\nwith study_lock(Path(sys.argv[1])):\n"
                               "    print('held', flush=True); time.sleep(600)", str(folder)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StudyInUse, match=rf"in use by another launch \(host .+, pid {holder.pid}, started "):
            with study_lock(folder):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert (folder / LOCK_NAME).exists()
    with study_lock(folder):
        assert f'"pid": {os.getpid()}' in (folder / LOCK_NAME).read_text()
    assert not folder.exists()  # nothing else was written there: the folder goes with the lock


# --- Ctrl-C ---------------------------------------------------------------------------------------

STAGES = {  # where a Ctrl-C lands: what to wait for in the study folder, then seconds more
    "inputs": (".launch.lock", 1.0),  # Ray starting, the training stack importing, no trial yet
    "first_order": ("results/curves.parquet", 0.0),  # the first epochs reported, no trial finished
    "lbfgs": ("ray/lbfgs", 1.0),  # the first-order trials finished, the L-BFGS trials starting
}


# Ctrl-C reaches the driver's whole process group (a terminal's); SIGTERM the driver alone (`kill`, a
# batch scheduler's preemption or time limit): it stops the study as Ctrl-C does, with exit status 143.
@pytest.mark.parametrize("stage, signum, twice", [("inputs", signal.SIGINT, False), ("first_order", signal.SIGTERM, False),
                                                  ("lbfgs", signal.SIGTERM, False), ("first_order", signal.SIGINT, True)])
def test_ctrl_c_or_sigterm_stops_the_study_within_seconds_and_resume_finishes_it(stage, signum, twice, cache_root,
                                                                                  smoke_inputs, tmp_path, launch_args):
    storage, log = tmp_path / "studies", tmp_path / "driver.log"
    folder = storage / "smoke"
    with _running(launch_args(storage), log) as driver:
        def stop():
            for _ in range(2 if twice else 1):
                os.killpg(driver.pid, signum) if signum == signal.SIGINT else os.kill(driver.pid, signum)
                time.sleep(0.3)

        trigger, delay = STAGES[stage]
        _wait_for(folder / trigger, driver, log)
        time.sleep(delay)
        workers = _descendants(driver.pid)
        before = _table(folder, "scores")
        code, stopped_s = _ended_after(driver, stop)
    output = log.read_text(errors="replace")
    print(f"{signal.Signals(signum).name} {'twice ' if twice else ''}at {stage}: exit {code} after {stopped_s:.1f} s")
    assert code == 128 + signum, output[-3000:]
    assert stopped_s < 10, output[-3000:]
    assert not _alive_after(workers, 30), "the study's Ray or trial workers kept running"
    for noise in ("Tuner.restore", "FileNotFoundError", "Traceback", "force RMSE", "SIGTERM received"):
        assert noise not in output, output[-3000:]
    what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    if not (folder / "ray").exists():  # stopped before its first trial: nothing to resume, nothing kept
        assert stage == "inputs" and _last_line(log) == what
        assert not (folder / "results").exists() and not (folder / ".launch.lock").exists()
        return
    assert _last_line(log) == (f"{what}: the finished trials are kept in {folder}; resume with: "
                               f"{sys.executable} -m study.launch {' '.join(launch_args(storage)[3:])} --resume")
    resumed = subprocess.run(launch_args(storage, "--resume"), cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_quiet_resume(resumed)
    _assert_complete_once(folder)
    if before is not None:  # rows written before the Ctrl-C stand as they were
        after = _table(folder, "scores").set_index(["trial_id", "stage", "test_set"])
        for row in before.itertuples():
            assert after.loc[(row.trial_id, row.stage, row.test_set), "wall_time_s"] == row.wall_time_s


def assert_quiet_resume(resumed: subprocess.CompletedProcess) -> None:
    """A resume says nothing of the trials that had not started (no warning wall from Ray), and
    that its wall time counts its own run."""
    for noise in ("Failed to fetch metrics", "FileNotFoundError", "Traceback"):
        assert noise not in resumed.stdout + resumed.stderr, (resumed.stdout + resumed.stderr)[-3000:]
    assert "resumed: its wall time counts this run only" in resumed.stdout


# --- a full or vanished disk ----------------------------------------------------------------------

FULL_AFTER_FIRST_SCORES = """
import errno, sys
import study.results
write_table, scores_written = study.results.pq.write_table, []

def full_after_first_scores(table, where, *args, **kwargs):
    if scores_written:
        raise OSError(errno.ENOSPC, "No space left on device", str(where))
    write_table(table, where, *args, **kwargs)
    if ".scores.parquet" in str(where):
        scores_written.append(where)

study.results.pq.write_table = full_after_first_scores
from study.launch import main
sys.exit(main(sys.argv[1:]))
"""


def test_full_disk_stops_the_study_with_one_line_and_keeps_the_rows_written(cache_root, smoke_inputs, tmp_path,
                                                                            launch_args):
    """The disk fills up once the first trial's scores are written: every later write of the driver
    fails with ENOSPC (the trials themselves run in Ray's workers, as on a real full disk)."""
    storage = tmp_path / "studies"
    command = [sys.executable, "-c", FULL_AFTER_FIRST_SCORES, *launch_args(storage)[3:]]
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    results = storage / "smoke" / "results"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write {results}/") and "No space left on device" in last, last
    scores = _table(storage / "smoke", "scores")
    assert scores.trial_id.nunique() == 1 and (scores.status == "ok").all()
    assert sorted(p.name for p in results.iterdir()) == ["curves.parquet", "scores.parquet"]  # no temporary file


def test_vanished_storage_stops_the_study_with_one_line_and_keeps_the_rows_written(cache_root, smoke_inputs,
                                                                                   tmp_path, launch_args):
    """The storage goes away mid-study as an unmounted disk does: its files live on elsewhere, and
    the path is empty (until Ray's trials create folders there again to persist their checkpoints)."""
    storage, log = tmp_path / "studies", tmp_path / "driver.log"
    driver = _start(launch_args(storage), log)
    try:
        _wait_for(storage / "smoke" / "results" / "scores.parquet", driver, log)
        storage.rename(tmp_path / "unmounted")
        code = driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert code == 2, log.read_text()[-3000:]
    assert _last_line(log) == (f"error: study folder {storage / 'smoke'} has vanished (removed, moved, or its "
                               "disk unmounted) since this study started; its rows are where it went")
    scores = _table(tmp_path / "unmounted" / "smoke", "scores")
    assert scores.trial_id.nunique() >= 1 and not (storage / "smoke" / "results").exists()
