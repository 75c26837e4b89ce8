"""One launch at a time per study folder: an exclusive lock held for the life of the launch.

The lock is `flock` on `<study>/.launch.lock`, which names its holder (host, pid, start time) for
the message a second launch prints. The kernel releases it when the holder exits, however it
exits (an exception, Ctrl-C, SIGKILL, the OOM killer), so a lock is never stale. The holder removes
the file on release while it still holds the lock, and a new holder checks that the file it locked
is still the one at that path, so a launch that opened the file just before it was removed tries
again instead of holding a lock nobody else sees. Ray's processes do not inherit the lock (Python
opens files close-on-exec). `flock` on a network file system locks across machines only where that
file system supports it (NFSv4, Lustre and BeeGFS do; see their mount options).

`trainables.speed.compile_lock` waits for its lock and goes on without it after a while; this one never
waits: a second launch of a running study is a mistake to report, not a turn to wait for.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from study.results import StorageError
from study.supervise import command_pid
from trainables.errors import OptistudyError
from trainables.files import try_lock

LOCK_NAME = ".launch.lock"


class StudyInUse(OptistudyError):
    """Another process holds the study folder's lock."""


@contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock (the folder is created if needed) for the block; raises `StudyInUse`
    naming the holder if another launch holds it. A folder left empty at the end is removed."""
    try:
        handle = _acquire(Path(folder))
    except OSError as err:  # a full disk; ENOLCK: a network file system mounted without locks
        raise StorageError(f"cannot lock {Path(folder) / LOCK_NAME}: {err.strerror or err}") from None
    try:
        yield
    finally:
        _release(Path(folder), handle)


def _acquire(folder: Path) -> IO[str]:
    path = folder / LOCK_NAME
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            handle = open(path, "a+")
        except FileNotFoundError:  # the folder was removed by a holder that released it: again
            continue
        try:
            if not try_lock(handle):
                raise StudyInUse(f"study folder {folder} is in use by another launch ({holder(path)}); "
                                 "wait for it to end, or pass --name to start another study")
            if _is_current(handle, path):
                _write_holder(handle)
                return handle
        except BaseException:
            handle.close()
            raise
        handle.close()  # removed by its last holder after this process opened it: lock the new one


def _is_current(handle: IO[str], path: Path) -> bool:
    try:
        on_disk, held = os.stat(path), os.fstat(handle.fileno())
    except FileNotFoundError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _write_holder(handle: IO[str]) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"host": socket.gethostname(), "pid": command_pid(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    handle.flush()


def holder(path: Path) -> str:
    """'host H, pid P, started T' from the lock file (the holder writes it just after locking)."""
    for _ in range(20):
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(path.read_text())
            return f"host {info['host']}, pid {info['pid']}, started {info['started']}"
        time.sleep(0.05)
    return "holder unknown"


def _release(folder: Path, handle: IO[str]) -> None:
    """Remove the lock file while still holding the lock, then the folder if nothing else is in it
    (a launch that failed before writing anything leaves nothing behind)."""
    try:
        if _is_current(handle, folder / LOCK_NAME):
            (folder / LOCK_NAME).unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
    finally:
        handle.close()
