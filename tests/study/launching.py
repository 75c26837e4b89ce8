"""Launching a study as a user does (`python -m study.launch` in a subprocess) and reading its tables."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def results_table(folder: Path, name: str):
    """A study folder's results table (`scores`, `curves`, `properties`) as a DataFrame."""
    import pyarrow.parquet as pq

    return pq.read_table(folder / "results" / f"{name}.parquet").to_pandas()


def launched_space(space_toml: str, name: str, tmp_path_factory) -> tuple[Path, str]:
    """A space written as `name`.toml and run once end to end through the CLI: (its study folder,
    the launch's stdout)."""
    folder = tmp_path_factory.mktemp(name)
    (folder / f"{name}.toml").write_text(space_toml)
    done = run_launch(folder / "studies", space=str(folder / f"{name}.toml"))
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "studies" / name, done.stdout


def launch_command(storage: Path, *extra: str, space: str = "smoke", local: bool = True) -> list[str]:
    """`python -m study.launch` on `space`; a local Ray of 2 CPUs unless `local` is False."""
    command = [sys.executable, "-m", "study.launch", "--space", space, "--storage", str(storage), "--quiet"]
    return command + (["--num-cpus", "2"] if local else []) + list(extra)


def run_launch(storage: Path, *extra: str, space: str = "smoke", timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(launch_command(storage, *extra, space=space), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
