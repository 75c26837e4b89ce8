"""The packages import one way. Inside trainables: core <- speed <- embedded <- stages <- commands;
above it the search spaces and the study; analysis imports none of them. The core imports without
Ray, the compile machinery or any stage.

A module started by name (`python -m trainables.stages.warm_compile`, a string naming a module of
these packages) is a dependency as much as an import, and counts as one.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERED = ("trainables", "search_spaces", "study")
PACKAGES = (*LAYERED, "analysis")

# A module may depend on its own layer and lower ones only (function-level imports count); a
# module's layer is that of the longest name here that it starts with.
LAYERS = {
    "trainables.errors": 0, "trainables.files": 0, "trainables.quiet_imports": 0,
    "trainables.core": 1, "trainables.cli": 1,
    "trainables.speed": 2,
    "trainables.embedded": 3,
    "trainables.properties": 4, "trainables.stages": 4,
    "trainables.finetune": 5, "trainables.refine": 5, "trainables.build_default": 5, "trainables.spectrum": 5,
    # one layer: a space's [adaptive] table is checked against study.adaptive's schedulers
    "search_spaces": 6, "study": 6,
}

# What a package must not depend on at all, whatever the layers say (a package's top-level names).
FORBIDDEN = {
    "analysis": ("trainables", "search_spaces", "study", "ray", "torch"),
    "trainables": ("ray",),  # the study layer owns Ray: its trainables (study.trials) wrap the stages
}

MODULE_NAME = re.compile(rf"^(?:{'|'.join(PACKAGES)})(?:\.\w+)+$")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path, package: str) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """(module, line) of every import in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names
                      if node.module in PACKAGES]  # from trainables import core
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return found


def started_modules(path: Path) -> list[tuple[str, int]]:
    """(module, line) of every string in `path` naming a module of PACKAGES (one started by name)."""
    return [(node.value, node.lineno) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value)]


def dependencies(path: Path) -> list[tuple[str, int]]:
    return imported_modules(path) + started_modules(path)


def layer_of(module: str) -> int | None:
    prefixes = [name for name in LAYERS if module == name or module.startswith(name + ".")]
    return LAYERS[max(prefixes, key=len)] if prefixes else None


def upward_imports(root: Path = REPO) -> list[str]:
    wrong = []
    for package in LAYERED:
        for module, path in modules(root, package).items():
            own = layer_of(module)
            wrong += [f"{module}:{line} imports {target}" for target, line in dependencies(path)
                      if own is not None and (layer_of(target) or 0) > own]
    return wrong


def forbidden_imports(root: Path = REPO) -> list[str]:
    wrong = []
    for package, banned in FORBIDDEN.items():
        for module, path in modules(root, package).items():
            wrong += [f"{module}:{line} imports {target}" for target, line in dependencies(path)
                      if target.split(".")[0] in banned]
    return wrong


def test_every_module_is_placed_in_a_layer():
    unplaced = [module for package in LAYERED for module in modules(REPO, package)
                if module != package and layer_of(module) is None]
    assert unplaced == [], "add them to LAYERS"


def test_imports_point_down_the_layers():
    assert upward_imports() == []


def missing_started_modules(root: Path = REPO) -> list[str]:
    known = {module for package in PACKAGES for module in modules(root, package)}
    return [f"{module}:{line} starts {target}" for package in PACKAGES
            for module, path in modules(root, package).items()
            for target, line in started_modules(path) if target not in known]


def test_every_module_started_by_name_exists():
    """A module named in a string is one a process starts (`python -m`): a move must take the name along."""
    assert missing_started_modules() == []


def test_the_check_sees_a_stale_module_name(tmp_path):
    (tmp_path / "trainables" / "speed").mkdir(parents=True)
    (tmp_path / "trainables" / "speed" / "warm.py").write_text("MODULE = 'trainables.warm_compile'\n")
    assert missing_started_modules(tmp_path) == ["trainables.speed.warm:1 starts trainables.warm_compile"]


def test_no_package_imports_what_it_must_not():
    assert forbidden_imports() == []


PLANTED = {
    "an import inside a function": ("trainables/core/bad.py",
                                    "def f():\n    from trainables.stages.finetune import run_finetune\n",
                                    "trainables.core.bad:2 imports trainables.stages.finetune"),
    "a module started by name": ("trainables/speed/bad.py",
                                 "import subprocess, sys\n"
                                 "subprocess.run([sys.executable, '-m', 'trainables.stages.warm_compile'])\n",
                                 "trainables.speed.bad:2 imports trainables.stages.warm_compile"),
    "a package above": ("trainables/stages/bad.py", "import study.launch\n",
                        "trainables.stages.bad:1 imports study.launch"),
}


@pytest.mark.parametrize("planted", PLANTED, ids=list(PLANTED))
def test_the_check_sees_an_upward_dependency(tmp_path, planted):
    file, text, expected = PLANTED[planted]
    (tmp_path / file).parent.mkdir(parents=True)
    (tmp_path / file).write_text(text)
    assert upward_imports(tmp_path) == [expected]


def test_the_check_sees_a_forbidden_import(tmp_path):
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "bad.py").write_text("def f():\n    import torch\n")
    assert forbidden_imports(tmp_path) == ["analysis.bad:2 imports torch"]


def test_the_check_sees_ray_in_trainables(tmp_path):
    (tmp_path / "trainables" / "stages").mkdir(parents=True)
    (tmp_path / "trainables" / "stages" / "bad.py").write_text("import torch\nfrom ray import tune\n")
    assert forbidden_imports(tmp_path) == ["trainables.stages.bad:2 imports ray"]


def test_the_core_imports_without_ray_speed_or_stages():
    probe = ("import sys, pkgutil, importlib, trainables.core as core\n"
             "for m in pkgutil.iter_modules(core.__path__): importlib.import_module('trainables.core.' + m.name)\n"
             "loaded = {m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'trainables.'))}\n"
             "print(sorted({m.split('.')[0] if m.startswith('ray') else '.'.join(m.split('.')[:2]) for m in loaded}))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = "['trainables.core', 'trainables.errors', 'trainables.files', 'trainables.quiet_imports']"
    assert result.stdout.strip().splitlines()[-1] == loaded
