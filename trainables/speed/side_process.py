"""A command run beside the training process (a compile warm-up, a background compile): in its own
session, with its output in a log inside a temporary folder of its own, ended with its whole
process group (inductor's compile workers included) and its folder removed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class SideProcess:
    """`folder` holds the command's input files (written before `start`) and its log."""

    def __init__(self, prefix: str):
        self.folder = Path(tempfile.mkdtemp(prefix=prefix))
        self._process: subprocess.Popen | None = None
        self.started = 0.0

    def start(self, module: str, *arguments: str, env: dict[str, str] | None = None) -> None:
        """`python -m module arguments...`, output to `folder/log.txt`."""
        with open(self.folder / "log.txt", "wb") as log:
            self._process = subprocess.Popen([sys.executable, "-m", module, *arguments], stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                             start_new_session=True)
        self.started = time.perf_counter()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def poll(self) -> int | None:
        """The exit code, or None while it runs (or before it starts)."""
        return None if self._process is None else self._process.poll()

    def wait(self) -> int | None:
        return None if self._process is None else self._process.wait()

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def last_log_line(self) -> str:
        log = self.folder / "log.txt"
        lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
        return lines[-1] if lines else "no output"

    def stop(self) -> None:
        """End it now, with its process group, and remove its folder."""
        if self.running():
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self.remove_folder()

    def remove_folder(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
