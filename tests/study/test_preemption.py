"""A local Ray that dies under a study (its raylet killed outright, or one of its agents, with
which the raylet fate-shares): one line naming what died and the command that resumes the study,
exit status 1, and the resume finishes the study with every row once and no warning about the
trials that had not started; and which signals `--stop-signal` takes. SIGTERM itself is drilled
with Ctrl-C (test_accidents.py)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_accidents import (ENV, ROOT, STAGES, _assert_complete_once, _ended_after, _last_line, _running,
                            _wait_for, assert_quiet_resume)
from test_faults import _alive_after, _command, _descendants

# What is killed where (one study: each launch ends with a death, the last finishes it): the raylet
# (Ray's core worker ends the driver at once, study.supervise speaks for it) while the first
# epochs are written, then, in the resumed launch, the dashboard agent as the L-BFGS trials start.
KILLED = {"raylet": ("first_order", lambda command: Path(command.split()[0]).name == "raylet"),
          "dashboard_agent": ("lbfgs", lambda command: command.startswith("ray::DashboardAgent"))}


def test_a_killed_raylet_or_agent_ends_the_study_with_one_line_and_resume_recovers(cache_root, smoke_inputs,
                                                                                   tmp_path, launch_args):
    storage, log = tmp_path / "studies", tmp_path / "driver.log"
    folder = storage / "smoke"
    for resumes, (kind, (stage, is_it)) in enumerate(KILLED.items()):
        with _running(launch_args(storage, *(["--resume"] if resumes else [])), log) as driver:
            trigger, delay = STAGES[stage]
            _wait_for(folder / trigger, driver, log)
            time.sleep(delay)
            ray_processes = _descendants(driver.pid)
            victim = next(pid for pid, command in ray_processes.items() if is_it(command))
            code, ended_s = _ended_after(driver, lambda: os.kill(victim, signal.SIGKILL))
        output = log.read_text(errors="replace")
        print(f"{kind} killed at {stage}: exit {code} after {ended_s:.1f} s")
        assert code == 1, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        assert _last_line(log) == (
            f"error: the study's local Ray died under it ({kind} ended: killed, or out of memory); "
            f"the finished trials are kept in {folder}; resume with: "
            f"{sys.executable} -m study.launch {' '.join(launch_args(storage, '--resume')[3:])}")
        assert not _alive_after(ray_processes, 30), "the dead Ray's other processes kept running"
    resumed = subprocess.run(launch_args(storage, "--resume"), cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_quiet_resume(resumed)
    _assert_complete_once(folder)


SUPERVISED = """
import os, signal, sys, time
from study.supervise import supervise

def run():
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        print(os.getpid(), flush=True)
        time.sleep(60)
    except SystemExit as stopped:
        return stopped.code

code = supervise(run)
print("after supervise", flush=True)  # the caller's code goes on in the child only
sys.exit(code)
"""


# SIGTERM: the child stops and the caller's code goes on there; SIGKILL: Popen's status of a killed process
@pytest.mark.parametrize("signum, status, printed", [(signal.SIGTERM, 143, "after supervise\n"),
                                                     (signal.SIGKILL, -signal.SIGKILL, "")])
def test_the_supervising_parent_passes_sigterm_on_and_takes_the_child_with_it_when_killed(signum, status, printed):
    """SIGTERM to the command's process reaches the study's process, whose exit status the command
    takes; the command killed outright, its child dies with it (nothing of the study runs on)."""
    parent = subprocess.Popen([sys.executable, "-c", SUPERVISED], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    running = {child: _command(child)}
    os.kill(parent.pid, signum)
    assert parent.wait(timeout=10) == status
    assert parent.stdout.read() == printed
    assert not _alive_after(running, 5)


def test_stop_signal_takes_usr2_and_refuses_ray_tunes_own_usr1(capsys):
    from study.launch import build_parser

    assert build_parser().parse_args(["--space", "smoke", "--stop-signal", "USR2"]).stop_signal == ["USR2"]
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["--space", "smoke", "--stop-signal", "USR1"])
    assert refused.value.code == 2
    assert capsys.readouterr().err.strip() == ("error: argument --stop-signal: invalid choice: 'USR1' (choose from "
                                               "'USR2') (see --help)")
