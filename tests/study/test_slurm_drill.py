"""The SLURM drill: `scripts/slurm/study.sbatch` on a real one-machine SLURM. A small study is
submitted, `scancel --signal=TERM` stops it mid-run (as a preemption does), the job requeues itself
and resumes the study, and every trial ends ok exactly once with no row twice.

It uses the SLURM this machine runs, or starts one from Debian's slurm-wlm and munge packages
(`scripts/slurm/single-node.sh`, as root; `.ci/run` installs them); elsewhere it is skipped, with
the reason. It installs nothing."""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from test_accidents import _assert_complete_once, _table

ROOT = Path(__file__).resolve().parents[2]
SLURM = ROOT / "scripts" / "slurm"


def why_no_slurm() -> str | None:
    """None where a SLURM answers here (started from scripts/slurm where it is installed but not
    running), else why the drill cannot run."""
    if shutil.which("sinfo") and subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0:
        return None
    missing = [name for name in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(name) is None]
    if missing:
        return f"no SLURM here ({', '.join(missing)} not installed: Debian's slurm-wlm and munge, as .ci/run installs)"
    if os.geteuid() != 0:
        return "SLURM is installed but not running, and starting it (scripts/slurm/single-node.sh) needs root"
    started = subprocess.run(["bash", str(SLURM / "single-node.sh")], capture_output=True, text=True, timeout=120)
    return None if started.returncode == 0 else f"the one-machine SLURM did not start: {started.stderr.strip()}"


@pytest.fixture(scope="module")
def slurm():
    reason = why_no_slurm()
    if reason:
        pytest.skip(reason)


def job_state(job: str) -> dict[str, str]:
    """JobState, Reason, Restarts and the like of `job` (`scontrol show job`)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def requeued(state: dict[str, str]) -> bool:
    """Whether the job is back in the queue, held until its begin time (`Restarts` alone is counted
    before SLURM has set that begin time)."""
    return state.get("Restarts", "0") != "0" and (state.get("JobState"), state.get("Reason")) == ("PENDING",
                                                                                                "BeginTime")


def wait_until(condition, what: str, timeout: float, output: Path) -> float:
    """Seconds until `condition()` holds (looked at every 0.2 s), failing after `timeout` with the job's output."""
    start = time.perf_counter()
    while not condition():
        tail = output.read_text(errors="replace")[-3000:] if output.is_file() else ""
        assert time.perf_counter() - start < timeout, f"no {what} within {timeout} s\n{tail}"
        time.sleep(0.2)
    return time.perf_counter() - start


def test_a_study_stopped_by_sigterm_requeues_itself_and_resumes(slurm, cache_root, smoke_inputs, tmp_path):
    storage, output = tmp_path / "studies", tmp_path / "job.out"
    folder = storage / "smoke"
    submit = ["sbatch", "--parsable", f"--cpus-per-task={min(2, os.cpu_count())}", f"--output={output}",
              "--time=30", str(SLURM / "study.sbatch"), "--space", "smoke", "--name", "smoke", "--storage",
              str(storage), "--quiet"]
    job = subprocess.run(submit, cwd=ROOT, env={**os.environ, "OPTISTUDY_DIR": str(ROOT)}, capture_output=True,
                         text=True, check=True).stdout.strip()
    seconds = {}
    try:
        seconds["to first epochs"] = wait_until(lambda: (folder / "results" / "curves.parquet").exists(),
                                                "first epochs", 600, output)
        subprocess.run(["scancel", "--signal=TERM", job], check=True)
        seconds["stop to requeue"] = wait_until(lambda: requeued(job_state(job)), "requeue", 120, output)
        # SLURM holds a requeued job back for the credential's lifetime (single-node.conf: 20 s); releasing
        # it earlier starts it against a revoked credential, and the job fails.
        seconds["requeue to start"] = wait_until(lambda: job_state(job).get("JobState") != "PENDING", "restart", 180,
                                                 output)
        seconds["start to end"] = wait_until(lambda: job_state(job).get("JobState") in ("COMPLETED", "FAILED",
                                                                                      "CANCELLED"), "end", 900, output)
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    text = output.read_text(errors="replace")
    print("\n".join(line for line in text.splitlines() if line.startswith(("optistudy:", "stopped by", "srun:",
                                                                              "slurmstepd", "resumed:", "report:"))))
    print("; ".join(f"{what} {s:.1f} s" for what, s in seconds.items()))
    assert job_state(job)["JobState"] == "COMPLETED", text[-3000:]
    assert f"stopped by SIGTERM: the finished trials are kept in {folder}; resume with: " in text
    assert "optistudy: stopped (exit 143); requeueing job" in text
    assert "Traceback" not in text and "Failed to fetch metrics" not in text, text[-3000:]
    _assert_complete_once(folder)
    scores = _table(folder, "scores")
    assert (scores.status == "ok").all()
    print(f"rows: {len(scores)} scores, {len(_table(folder, 'curves'))} curve points, none twice")
