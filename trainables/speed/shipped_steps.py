"""Compiled training steps shipped with the package: inductor's cache entries for the embedded
default's study step, loaded into a node's compiler cache before the node first compiles a step.

A study's first trial on a node with an empty compiler cache compiles its step for minutes, while
the node's other trials wait on the compile lock. Most of that is tracing the joint graph and
generating the kernels' C++ (Python, one core); with these entries in the cache, Dynamo traces,
the traced graph hits inductor's cache and only the C++ kernels are built (about a third of the
time: benchmarks/HISTORY.md). The entries are `torch.compiler.save_cache_artifacts()` of a
process that compiled the step from an empty cache (`python -m trainables.build_default --bundle`
writes them, through `python -m trainables.stages.warm_compile --save-compiled`).

Torch keys every entry by the graph, the torch build and the compiler settings, so an entry that
does not fit a step is never used. Those keys leave out the CPU's vector instruction set, which
the generated C++ is written for: a file is loaded only where its machine identity (torch version,
Python, architecture and inductor's vector ISA) is this machine's. Elsewhere the step compiles as
before. A test checks that the shipped file still fits the current step (a change to the step's
graph makes it miss: rebuild it then).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import tarfile
from pathlib import Path
from typing import Any, Callable

from trainables.files import write_archive
from trainables.speed.compile_lock import marker_folder

SHIPPED_FOLDER = Path(__file__).parent / "shipped"
IDENTITY, ARTIFACTS = "identity.json", "artifacts.bin"

_LOADED_IN_PROCESS: set[str] = set()


def machine_identity() -> dict[str, str]:
    """What a shipped entry's generated code depends on beyond torch's own cache keys."""
    import torch
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    return {"torch": torch.__version__, "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "machine": platform.machine(), "vec_isa": str(pick_vec_isa())}


def shipped_path(label: str) -> Path:
    return SHIPPED_FOLDER / f"{label}.tar.xz"


def save_compiled(path: Path) -> Path:
    """Write what this process compiled (or loaded) with torch.compile so far, with this machine's
    identity, as a shipped file at `path`."""
    import torch

    artifacts = torch.compiler.save_cache_artifacts()
    if artifacts is None:
        raise RuntimeError("this process compiled nothing to save")
    return write_shipped(path, machine_identity(), artifacts[0])


def write_shipped(path: Path, identity: dict[str, str], artifacts: bytes) -> Path:
    """A shipped file: the machine identity and torch's cache artifacts, with fixed metadata."""
    return write_archive(path, {IDENTITY: json.dumps(identity, indent=1).encode(), ARTIFACTS: artifacts})


def read_shipped(path: Path) -> tuple[dict[str, Any], bytes]:
    with tarfile.open(path, "r:xz") as archive:
        identity = json.loads(archive.extractfile(IDENTITY).read())
        return identity, archive.extractfile(ARTIFACTS).read()


def load_shipped_steps(progress: Callable[[str], None] = print, folder: Path = SHIPPED_FOLDER) -> list[str]:
    """Load every shipped file that fits this machine into this node's compiler cache, once per node
    and process; the names of those loaded now."""
    loaded = []
    for path in sorted(folder.glob("*.tar.xz")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        marker = marker_folder() / f"shipped-{digest}.loaded"
        if digest in _LOADED_IN_PROCESS or marker.exists():
            continue
        _LOADED_IN_PROCESS.add(digest)
        identity, artifacts = read_shipped(path)
        if identity != machine_identity():
            continue
        import torch

        torch.compiler.load_cache_artifacts(artifacts)
        marker.touch()
        loaded.append(path.name)
    if loaded:
        progress(f"added the package's compiled steps of the embedded default ({', '.join(loaded)}) to this "
                 f"node's compiler cache (used where a step is the same graph)")
    return loaded
