"""Lines that mace prints on import and that say nothing about a user's run, kept off the screen.

`mace.tools.cg` prints "cuequivariance or cuequivariance_torch is not available. ..." when first
imported, in every process (each command, each Ray worker), where the optional cuequivariance
kernels are not installed. optistudy never asks for them (a foundation's `cueq_config` is dropped
on load: trainables.core.foundation), so the line is noise. Only that line of that import is
dropped: anything else the import prints still shows.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import sys
from types import ModuleType

NOTICES = {
    "mace.tools.cg": "cuequivariance or cuequivariance_torch is not available. Cuequivariance acceleration will "
                     "be disabled.",
}


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of NOTICES as the import system would, with a loader that drops their line."""

    def find_spec(self, name, path, target=None):
        if name not in NOTICES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, NOTICES[name])
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, notice: str):
        self._loader, self._notice = loader, notice

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                self._loader.exec_module(module)
        finally:
            lines = printed.getvalue().splitlines(keepends=True)
            sys.stdout.write("".join(line for line in lines if line.strip() != self._notice))


def install() -> None:
    """Drop the NOTICES lines from now on in this process (once; idempotent)."""
    if not any(isinstance(finder, _QuietFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
