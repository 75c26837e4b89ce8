"""One process per node compiles a given training step; the others wait, then load it from the cache.

Inductor keeps what it compiles in an on-disk cache per node, but processes that start compiling
the same graph at the same time all miss it and each compile it in full. That is what a study's
first wave of trials does on a node whose cache is cold: a new node of a cluster running 16 trials
at 0.25 GPU each, or several CPU trials per node. Every compilation then competes for the same
cores (and memory), so all of them finish late. Around a compiled step's first call, the first
process of a node to reach it compiles alone while the others wait on a file lock; once it is
done they load the result from the cache, all at once. A marker file records that the step was
compiled, so a node with a warm cache takes no lock at all.

The marker and lock live in inductor's cache folder (`TORCHINDUCTOR_CACHE_DIR`, per user and node),
keyed by what determines the graph: the model's architecture, trainable set, dtype, device type,
the call's options and the torch version. A process that dies releases its lock (flock), and a
wait longer than `WAIT_LIMIT_S` goes on without the lock, as if there were none.
"""

from __future__ import annotations

import hashlib
import re
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator

from trainables.files import try_lock, unlock

WAIT_LIMIT_S = 1800.0
POLL_S = 0.5


def step_key(*parts: object) -> str:
    """A file-name-safe key for the graph that `parts` determine: their reprs, without the memory
    addresses of functions ("<function silu at 0x7f...>"), which differ between processes."""
    import torch

    text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr((torch.__version__, *parts)))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def marker_folder() -> Path:
    """This node's folder for the markers and locks: inside inductor's own cache folder, so that
    clearing that cache clears them too."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    folder = Path(cache_dir()) / "optistudy-compiled-steps"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def is_compiled_on_node(key: str) -> bool:
    return (marker_folder() / f"{key}.done").exists()


@contextmanager
def first_compile_on_node(key: str, progress: Callable[[str], None] = print) -> Iterator[None]:
    """Wrap the first call of a compiled step: alone on this node while nobody has compiled `key`,
    alongside everyone once somebody has. Marks `key` compiled when the block succeeds."""
    folder = marker_folder()
    done = folder / f"{key}.done"
    with ExitStack() as held:
        if not done.exists():
            held.enter_context(_node_lock(folder / f"{key}.lock", progress))
            if done.exists():  # compiled by the process this one waited for: load it with the others
                held.close()
        yield
        done.touch()


@contextmanager
def _node_lock(path: Path, progress: Callable[[str], None]) -> Iterator[None]:
    with open(path, "a") as handle:
        acquired = _wait_for_lock(handle, progress)
        try:
            yield
        finally:
            if acquired:
                unlock(handle)


def _wait_for_lock(handle, progress: Callable[[str], None]) -> bool:
    """Take the exclusive lock on `handle`: True, or False after WAIT_LIMIT_S without it."""
    start, announced = time.monotonic(), False
    while True:
        if try_lock(handle):
            return True
        if not announced:
            progress("another process on this node is compiling the same training step; "
                     "waiting to load it from the compiler cache")
            announced = True
        if time.monotonic() - start > WAIT_LIMIT_S:
            progress(f"waited {WAIT_LIMIT_S:.0f} s for it; compiling the training step here")
            return False
        time.sleep(POLL_S)
