"""Every way in that the README and the docs name still runs: each documented `python -m` command
and each benchmark script answers `--help` (in this process: the imports are what a moved module
breaks), and the installed `optistudy` console script dispatches to the commands."""

import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from study.console import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PACKAGES = ("study", "trainables", "analysis", "search_spaces")


def documented_modules() -> list[str]:
    """The project's modules that the README and the docs run with `python -m`."""
    named = {match for path in DOCUMENTS for match in re.findall(r"python -m ([\w.]+)", path.read_text())}
    return sorted(name for name in named if name.split(".")[0] in PACKAGES)


BENCHMARKS = sorted(path.name for path in (REPO / "benchmarks").glob("*.py") if not path.name.startswith("_"))


def help_text(run, argv: list[str], monkeypatch, capsys) -> str:
    """What `run()` prints for `argv` (as sys.argv[1:]), which must end in exit status 0."""
    monkeypatch.setattr(sys, "argv", ["prog", *argv])
    with pytest.raises(SystemExit) as stop:
        run()
    assert stop.value.code in (0, None)
    return capsys.readouterr().out


def test_the_documents_name_the_main_commands():
    assert {"study.launch", "trainables.finetune", "trainables.refine", "trainables.build_default",
            "analysis"} <= set(documented_modules())


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", documented_modules())
def test_a_documented_command_answers_help(module, monkeypatch, capsys):
    out = help_text(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True), ["--help"],
                    monkeypatch, capsys)
    assert out.startswith(f"usage: python -m {module} ")


@pytest.mark.parametrize("script", BENCHMARKS)
def test_a_benchmark_answers_help(script, monkeypatch, capsys):
    path = REPO / "benchmarks" / script
    out = help_text(lambda: runpy.run_path(str(path), run_name="__main__"), ["--help"], monkeypatch, capsys)
    assert out.startswith("usage: ")


@pytest.mark.parametrize("name", COMMANDS)
def test_the_console_script_runs_each_command(name, capsys):
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    module = COMMANDS[name].module.removesuffix(".cli")
    assert capsys.readouterr().out.startswith(f"usage: python -m {module} ")


def test_an_unknown_command_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["lunch"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument COMMAND: invalid choice: 'lunch'")


def test_the_installed_script_dispatches():
    """`pip install -e .` (scripts/setup.sh) puts `optistudy` beside the environment's python."""
    script = shutil.which("optistudy", path=str(Path(sys.executable).parent))
    assert script is not None, "optistudy is not installed: run scripts/setup.sh (pip install -e .)"
    done = subprocess.run([script, "analysis", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m analysis ")


def test_engine_overhead_profiles_a_function_by_its_code(monkeypatch):
    """`benchmarks/engine_overhead.py --profile` finds each function it breaks down by the function
    itself, not by a path that a move leaves stale."""
    import cProfile
    import pstats

    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.engine_overhead import callee_table

    def work() -> list:
        return sorted(str(n) for n in range(2000))

    profiler = cProfile.Profile()
    profiler.runcall(work)
    table = callee_table(pstats.Stats(profiler).stats, work, top=3)
    assert table.startswith("work: ") and "sorted" in table
