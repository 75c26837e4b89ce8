"""Files as every layer writes them: atomically (a reader sees the whole file or none), under an
exclusive `flock`, and under the project's cache folder. One place each, so that a fix to one
(a temporary name unique per process, the clean-up after a failed write) reaches every writer.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator, Mapping

try:
    import fcntl
except ImportError:  # Windows has no flock: locks are no-ops there, as if every process were alone
    fcntl = None

CACHE_ENV_VAR = "OPTISTUDY_CACHE"


def cache_root() -> Path:
    """Root of the data cache: ``$OPTISTUDY_CACHE`` if set and not empty, else ``~/.cache/optistudy``
    (an empty value, as `OPTISTUDY_CACHE= cmd` gives, would otherwise be the working directory)."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "optistudy")


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary name beside `path` (unique to this process), then rename it
    into place. If anything fails the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text))


def write_archive(path: str | Path, members: Mapping[str, bytes]) -> Path:
    """Write `members` (name -> content) as a `.tar.xz` at `path`, atomically, in their order and
    with fixed metadata (mode 0644, time 0): the same members give the same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda tmp: _write_tar_xz(tmp, members))


def _write_tar_xz(tmp: Path, members: Mapping[str, bytes]) -> None:
    with tarfile.open(tmp, "w:xz", preset=9) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))


def try_lock(handle: IO) -> bool:
    """Take the exclusive flock on an open file without waiting: False if another process holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def unlock(handle: IO) -> None:
    if fcntl is not None:
        fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def held_lock(path: str | Path) -> Iterator[None]:
    """Hold the exclusive flock on `path` (created if missing) for the block, waiting for it."""
    with open(path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            unlock(handle)
