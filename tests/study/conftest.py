import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def launch_command(storage: Path, *extra: str, space: str = "smoke", local: bool = True) -> list[str]:
    """`python -m study.launch` on `space`; a local Ray of 2 CPUs unless `local` is False."""
    command = [sys.executable, "-m", "study.launch", "--space", space, "--storage", str(storage), "--quiet"]
    return command + (["--num-cpus", "2"] if local else []) + list(extra)


def run_launch(storage: Path, *extra: str, space: str = "smoke", timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(launch_command(storage, *extra, space=space), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="session")
def launch():
    """Run `python -m study.launch` (default: the smoke space) in a subprocess and wait for it."""
    return run_launch


@pytest.fixture(scope="session")
def launch_args():
    """The argument list of a `python -m study.launch` call, to start it yourself."""
    return launch_command


@pytest.fixture(scope="session")
def smoke_study(cache_root, smoke_inputs, tmp_path_factory):
    """The smoke space run once end to end through the CLI; returns its study folder."""
    storage = tmp_path_factory.mktemp("studies")
    done = run_launch(storage)
    assert done.returncode == 0, done.stderr[-3000:]
    return storage / "smoke", done.stdout
