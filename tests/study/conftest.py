import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def launch_command(storage: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "study.launch", "--space", "smoke", "--storage", str(storage),
            "--num-cpus", "2", "--quiet", *extra]


def run_launch(storage: Path, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(launch_command(storage, *extra), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="session")
def launch():
    """Run `python -m study.launch` on the smoke space in a subprocess."""
    return run_launch


@pytest.fixture(scope="session")
def smoke_study(cache_root, smoke_inputs, tmp_path_factory):
    """The smoke space run once end to end through the CLI; returns its study folder."""
    storage = tmp_path_factory.mktemp("studies")
    done = run_launch(storage)
    assert done.returncode == 0, done.stderr[-3000:]
    return storage / "smoke", done.stdout
