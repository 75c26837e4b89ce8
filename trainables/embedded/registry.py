"""Embedded systems: small, real, labelled data sets generated on the user's machine, cached on disk.

Each system is a foundation-style pre-training corpus, a held-out fine-tuning target (train set and
named test sets) and isolated-atom energies, all written as extxyz with labels stored as ASE stores
calculator results (``energy=`` in the comment line, a ``forces`` column, ``stress=`` for periodic
cells) and ``info["config_type"]`` on every configuration:

- ``"biphenyl-xtb"`` (needs tblite): GFN2-xTB on G2 molecules, target biphenyl (see ``trainables.embedded.xtb``).
- ``"cu3au-emt"`` (ASE only): EMT on fcc-metal cells, target L1_2 Cu3Au (see ``trainables.embedded.emt``).

Builds are reproducible from the system's fixed seed and cached under
``<cache_root()>/<DATA_VERSION>/<name>-<size>/``. Every file is written atomically and
``manifest.json`` last, so a folder without a matching manifest (an interrupted build, another
seed, version or calculator) is rebuilt. Concurrent builds of one folder wait on a file lock.

Example::

    files = build_system(default_system_name(), size="full")
    corpus = ase.io.read(files.pretrain, ":")
"""

from __future__ import annotations

import importlib.util
import io
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase.io
from ase import Atoms

from trainables.embedded import bundle, emt, xtb
from trainables.embedded.sampling import GeneratedSets
from trainables.errors import ConfigError
from trainables.files import cache_root, held_lock, write_text_atomically

DATA_VERSION = "v1"
MANIFEST_NAME = "manifest.json"
# Builds already reported as cached in this process: a study resolves its inputs more than once
# (the launcher, then the data check), and says so once.
_REPORTED_CACHED: set[Path] = set()


class UnknownSystemError(ConfigError):
    """A system name that is not in ``SYSTEMS``."""


class UnknownSizeError(ConfigError):
    """A size that the chosen system does not define."""


class SystemUnavailableError(ConfigError):
    """The system's labelling calculator is not installed."""


@dataclass(frozen=True)
class SystemSpec:
    """One embedded system: how to label it and how much to generate at each size.

    ``plans`` maps a size ("full", "smoke") to the generator's plan; ``generate(plan, seed, progress)``
    returns the labelled sets; ``calculator_version()`` names the labelling method and package
    version (recorded in, and matched against, the manifest); ``requires`` is the Python package the
    calculator needs, or None.
    """

    name: str
    description: str
    has_stress: bool
    test_names: tuple[str, ...]
    seed: int
    plans: Mapping[str, Any]
    generate: Callable[[Any, int, Callable[[str], None]], GeneratedSets]
    calculator_version: Callable[[], str]
    requires: str | None
    profile_tests: tuple[str, ...] = ()  # test sets that are a scan or path, in order

    def is_available(self) -> bool:
        """Whether the package the calculator needs is installed."""
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


@dataclass(frozen=True)
class SystemFiles:
    """The extxyz files of one built system (all under ``root``).

    ``tests`` maps test-set names, in the system's order, to files; ``e0s`` holds one
    single-atom configuration per element with ``config_type="IsolatedAtom"``.
    """

    name: str
    size: str
    root: Path
    pretrain: Path
    train: Path
    tests: dict[str, Path]
    e0s: Path
    has_stress: bool
    profile_tests: tuple[str, ...] = ()


SYSTEMS: dict[str, SystemSpec] = {
    "biphenyl-xtb": SystemSpec(
        name="biphenyl-xtb",
        description="GFN2-xTB (tblite): G2 C/H/N/O molecules at 300/800 K; target biphenyl C12H10",
        has_stress=False,
        test_names=xtb.TEST_NAMES,
        seed=20240601,
        plans=xtb.PLANS,
        generate=xtb.generate,
        calculator_version=xtb.calculator_version,
        requires="tblite",
        profile_tests=("dihedral",),
    ),
    "cu3au-emt": SystemSpec(
        name="cu3au-emt",
        description="ASE EMT: strained fcc/bcc/hcp metals and binary alloys; target L1_2 Cu3Au",
        has_stress=True,
        test_names=emt.TEST_NAMES,
        seed=20240602,
        plans=emt.PLANS,
        generate=emt.generate,
        calculator_version=emt.calculator_version,
        requires=None,
    ),
}


def default_system_name() -> str:
    """"biphenyl-xtb" where tblite is installed, else "cu3au-emt"."""
    return "biphenyl-xtb" if SYSTEMS["biphenyl-xtb"].is_available() else "cu3au-emt"


def get_system(name: str) -> SystemSpec:
    """The registered system ``name``; raises ``UnknownSystemError`` listing the known ones."""
    if name not in SYSTEMS:
        raise UnknownSystemError(f"unknown system {name!r}; known systems: {', '.join(SYSTEMS)}")
    return SYSTEMS[name]


def build_system(
    name: str,
    size: str = "full",
    cache_root: Path | None = None,
    rebuild: bool = False,
    progress: Callable[[str], None] = print,
    bundled: bool = True,
) -> SystemFiles:
    """Generate (or reuse from the cache) the labelled extxyz files of system ``name`` at ``size``.

    ``cache_root`` defaults to ``cache_root()``. A cached build is reused when its manifest matches
    the data version, system, size, seed and calculator version and all its files exist;
    ``rebuild=True`` regenerates regardless. Otherwise a missing build is unpacked from the package's
    bundle where that matches (``trainables.embedded.bundle``; with its pretrained foundation), and
    generated where it does not or ``bundled=False``. ``progress`` receives one-line status messages.
    Raises ``UnknownSystemError``, ``UnknownSizeError`` or ``SystemUnavailableError``.
    """
    spec = get_system(name)
    if size not in spec.plans:
        raise UnknownSizeError(f"unknown size {size!r} for system {name!r}; known sizes: {', '.join(spec.plans)}")
    if not spec.is_available():
        others = [other for other, candidate in SYSTEMS.items() if candidate.is_available()]
        raise SystemUnavailableError(
            f"system {name!r} needs the Python package {spec.requires!r} (pip install {spec.requires}); "
            f"available systems: {', '.join(others)}"
        )
    files = system_files(spec, size, _system_folder(name, size, cache_root))
    expected = _manifest_key(spec, size)
    files.root.mkdir(parents=True, exist_ok=True)
    with held_lock(files.root / ".lock"):  # concurrent processes build it once
        if not rebuild and _cached(files, expected):
            if files.root not in _REPORTED_CACHED:
                _REPORTED_CACHED.add(files.root)
                progress(f"{name} ({size}): using cached files in {files.root}")
            return files
        bundle_file = bundle.bundle_path(name, size)
        if not rebuild and bundled and bundle.matches(bundle.bundled_manifest(bundle_file), expected):
            (files.root / MANIFEST_NAME).unlink(missing_ok=True)
            bundle.unpack(bundle_file, files.root, lambda message: progress(f"{name} ({size}): {message}"))
            return files
        _generate_and_write(spec, size, files, expected, progress)
    return files


def system_files(spec: SystemSpec, size: str, folder: Path) -> SystemFiles:
    """The file layout of one build of ``spec`` in ``folder`` (whether or not it exists yet)."""
    return SystemFiles(
        name=spec.name,
        size=size,
        root=folder,
        pretrain=folder / "pretrain.extxyz",
        train=folder / "train.extxyz",
        tests={test_name: folder / f"test_{test_name}.extxyz" for test_name in spec.test_names},
        e0s=folder / "e0s.extxyz",
        has_stress=spec.has_stress,
        profile_tests=spec.profile_tests,
    )


def _system_folder(name: str, size: str, root: Path | None) -> Path:
    base = Path(root) if root is not None else cache_root()
    return base / DATA_VERSION / f"{name}-{size}"


def _manifest_key(spec: SystemSpec, size: str) -> dict[str, Any]:
    """The manifest fields a cached build must match to be reused."""
    return {
        "data_version": DATA_VERSION,
        "system": spec.name,
        "size": size,
        "seed": spec.seed,
        "generator": spec.calculator_version(),
    }


def _by_role(pretrain: Any, train: Any, tests: dict[str, Any], e0s: Any) -> dict[str, Any]:
    """One entry per file role, in file order: pretrain, train, test_<name>..., e0s."""
    return {"pretrain": pretrain, "train": train, **{f"test_{name}": test for name, test in tests.items()}, "e0s": e0s}


def data_paths(files: SystemFiles) -> dict[str, Path]:
    """The data files of a build, by role: pretrain, train, test_<name>..., e0s."""
    return _by_role(files.pretrain, files.train, files.tests, files.e0s)


def _cached(files: SystemFiles, expected: dict[str, Any]) -> bool:
    manifest_path = files.root / MANIFEST_NAME
    if not manifest_path.is_file():
        return False
    manifest = json.loads(manifest_path.read_text())
    matches = all(manifest.get(key) == value for key, value in expected.items())
    return matches and all(path.is_file() for path in data_paths(files).values())


def _generate_and_write(
    spec: SystemSpec, size: str, files: SystemFiles, expected: dict[str, Any], progress: Callable[[str], None]
) -> None:
    # The old manifest goes first: if this build is interrupted, no manifest vouches for mixed files.
    (files.root / MANIFEST_NAME).unlink(missing_ok=True)
    progress(f"{spec.name} ({size}): generating into {files.root}")
    start = time.perf_counter()
    sets = spec.generate(spec.plans[size], spec.seed, lambda message: progress(f"{spec.name} ({size}): {message}"))
    configs = _by_role(sets.pretrain, sets.train, sets.tests, sets.e0s)
    for key, path in data_paths(files).items():
        write_text_atomically(path, _extxyz_text(configs[key]))
    seconds = time.perf_counter() - start
    manifest = {
        **expected,
        "counts": {key: len(configs[key]) for key in data_paths(files)},
        "files": {key: path.name for key, path in data_paths(files).items()},
        "has_stress": spec.has_stress,
        "seconds": round(seconds, 2),
        "notes": sets.notes,
    }
    write_text_atomically(files.root / MANIFEST_NAME, json.dumps(manifest, indent=2))
    progress(f"{spec.name} ({size}): done in {seconds:.1f} s, {manifest['counts']}")


def _extxyz_text(configs: list[Atoms]) -> str:
    buffer = io.StringIO()
    ase.io.write(buffer, configs, format="extxyz")
    return buffer.getvalue()

