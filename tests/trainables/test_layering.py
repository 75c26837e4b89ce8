"""The trainables package's layers import one way: core <- speed <- embedded <- stages <- Ray wrapper
and commands. The core imports without Ray, the compile machinery or any stage."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "trainables"

# A module may import from its own layer and from lower ones only (function-level imports count).
LAYERS = {
    "errors": 0, "files": 0,
    "core": 1,
    "speed": 2,
    "embedded": 3,
    "properties": 4, "stages": 4,
    "ray_trainables": 5, "cli": 5,
    "finetune": 6, "refine": 6, "warm_compile": 6, "build_default": 6,
}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "trainables" and len(parts) > 1 else None


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            if node.module == "trainables":  # from trainables import core
                found += [(f"trainables.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return found


def upward_imports() -> list[str]:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        own = layer_of(module)
        if own is None:
            continue
        for target, line in imported_modules(path):
            other = layer_of(target)
            if other is not None and other != own and LAYERS[other] > LAYERS[own]:
                wrong.append(f"{module}:{line} imports {target}")
    return wrong


def test_every_module_is_placed_in_a_layer():
    placed = {layer_of(module_name(path)) for path in PACKAGE.rglob("*.py")} - {None}
    assert placed <= set(LAYERS), f"add {sorted(placed - set(LAYERS))} to LAYERS"


def test_imports_point_down_the_layers():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a core module importing a stage is reported."""
    fake = tmp_path / "trainables" / "core"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    from trainables.stages.finetune import run_finetune\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "trainables")
    assert upward_imports() == ["trainables.core.bad:2 imports trainables.stages.finetune"]


def test_the_core_imports_without_ray_speed_or_stages():
    probe = ("import sys, pkgutil, importlib, trainables.core as core\n"
             "for m in pkgutil.iter_modules(core.__path__): importlib.import_module('trainables.core.' + m.name)\n"
             "loaded = {m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'trainables.'))}\n"
             "print(sorted({m.split('.')[0] if m.startswith('ray') else '.'.join(m.split('.')[:2]) for m in loaded}))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['trainables.core', 'trainables.errors', 'trainables.files']"
