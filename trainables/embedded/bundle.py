"""Built embedded defaults shipped with the package: a system's data and pretrained foundation as one
`.tar.xz` (`bundled/<name>-<size>.tar.xz`), unpacked into the cache instead of generating and
pretraining them on a user's first run (minutes on a laptop: the labels, then 30 epochs of
pretraining).

A bundle is the cache folder that `python -m trainables.build_default --rebuild` writes, packed by
`python -m trainables.build_default --bundle`; a test rebuilds the smoke size and compares it with
its bundle. A bundle is used only where its manifest matches what this machine would generate (the
data version, system, size, seed and the labelling package's version) and its foundation's digest
matches the pretraining recipe; otherwise the system is generated and pretrained as before.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any, Callable, Mapping

from trainables.files import write_archive, write_atomically

BUNDLE_FOLDER = Path(__file__).parent / "bundled"
MANIFEST = "manifest.json"
FOUNDATION_FILES = ("foundation.pt", "foundation.json")


def bundle_path(name: str, size: str) -> Path:
    return BUNDLE_FOLDER / f"{name}-{size}.tar.xz"


def bundled_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest inside the bundle at `path`; None where there is no bundle."""
    if not path.is_file():
        return None
    with tarfile.open(path, "r:xz") as bundle:
        return json.loads(bundle.extractfile(MANIFEST).read())


def matches(manifest: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> bool:
    return manifest is not None and all(manifest.get(key) == value for key, value in expected.items())


def unpack(path: Path, folder: Path, progress: Callable[[str], None]) -> None:
    """Every file of the bundle into `folder`, each written atomically, the manifest last (so that
    an interrupted unpack leaves no manifest vouching for missing files)."""
    with tarfile.open(path, "r:xz") as bundle:
        members = sorted(bundle.getmembers(), key=lambda member: member.name == MANIFEST)
        for member in members:
            data = bundle.extractfile(member).read()
            write_atomically(folder / Path(member.name).name, lambda tmp: tmp.write_bytes(data))
    progress(f"unpacked the bundled build {path.name} into {folder} "
             f"(python -m trainables.build_default --rebuild regenerates it)")


def pack(folder: Path, data_names: list[str], path: Path) -> Path:
    """Write the bundle of a built cache folder: its data files, manifest and foundation files, in
    a fixed order with fixed metadata (the same folder gives the same archive)."""
    names = [*data_names, *FOUNDATION_FILES, MANIFEST]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}: build it first (python -m trainables.build_default)")
    return write_archive(path, {name: (folder / name).read_bytes() for name in names})
