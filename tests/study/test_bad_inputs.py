"""Bad inputs to `study.launch`: one line naming the problem, exit status 2, and a study already
written next to it left byte-for-byte untouched."""

import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bad_files(smoke_files, tmp_path_factory):
    """Broken variants of the smoke training data, a non-model file and a malformed space."""
    folder = tmp_path_factory.mktemp("bad")
    frames = ase.io.read(smoke_files.train, ":")[:6]
    no_forces = [a.copy() for a in frames]
    for a, b in zip(no_forces, frames):
        a.calc = SinglePointCalculator(a, energy=b.get_potential_energy())
    with_nan = [a.copy() for a in frames]
    for a, b in zip(with_nan, frames):
        a.calc = SinglePointCalculator(a, energy=float("nan"), forces=b.get_forces())
    silicon = Atoms("SiH4", positions=np.random.default_rng(0).normal(size=(5, 3)) * 1.5)
    silicon.calc = SinglePointCalculator(silicon, energy=-1.0, forces=np.zeros((5, 3)))
    ase.io.write(folder / "no_forces.xyz", no_forces, format="extxyz")
    ase.io.write(folder / "nan.xyz", with_nan, format="extxyz")
    ase.io.write(folder / "silicon.xyz", frames + [silicon], format="extxyz")
    (folder / "broken.xyz").write_text("27\nProperties=species:S:1:pos:R:3 energy=oops\nC 0 0\n")
    (folder / "not_a_model.pt").write_text("weights? no")
    (folder / "malformed.toml").write_text("optimizers = ['adam'\n")
    (folder / "a_file").write_text("")
    return folder


def _case(files, smoke, name):
    user = ["--foundation", str(smoke.foundation), "--e0s-file", str(smoke.e0s), "--mode", "naive",
            "--replay-samples", "none"]
    cases = {
        "missing file": (["--train-file", str(files / "nothere.xyz"), *user], "nothere.xyz: file not found"),
        "unreadable extxyz": (["--train-file", str(files / "broken.xyz"), *user], "cannot read"),
        "no forces": (["--train-file", str(files / "no_forces.xyz"), *user], "no forces label"),
        "NaN labels": (["--train-file", str(files / "nan.xyz"), *user], "energy label is not finite"),
        "element absent": (["--train-file", str(files / "silicon.xyz"), *user], "lacks element(s) Si"),
        "unknown optimizer": (["--optimizer", "adamax"], "unknown optimizer 'adamax'"),
        "unknown space": (["--space", "tables"], "unknown search space 'tables'"),
        "malformed space": (["--space", str(files / "malformed.toml")], "malformed space file"),
        "zero lr": (["--lr", "0"], "lr must be positive"),
        "negative lr": (["--lr=-1e-3"], "lr must be positive"),
        "storage not writable": (["--storage", str(files / "a_file" / "studies")], "storage path not writable"),
        "not a model": (["--train-file", str(smoke.train), *user, "--foundation", str(files / "not_a_model.pt")],
                        "is not a model file"),
        "unknown key": (["--train-file", str(smoke.train), "--energy-key", "DFT_E", *user], "no energy label"),
    }
    return cases[name]


CASES = ["missing file", "unreadable extxyz", "no forces", "NaN labels", "element absent", "unknown optimizer",
         "unknown space", "malformed space", "zero lr", "negative lr", "storage not writable", "not a model",
         "unknown key"]


@pytest.mark.parametrize("name", CASES)
def test_bad_input_leaves_results_untouched(name, bad_files, smoke_files, smoke_study):
    folder, _ = smoke_study
    before = {p: p.read_bytes() for p in (folder / "results").iterdir()}
    args, message = _case(bad_files, smoke_files, name)
    command = [sys.executable, "-m", "study.launch", "--space", "smoke", "--storage", str(folder.parent),
               "--name", "smoke", "--resume", "--quiet", *args]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    assert {p: p.read_bytes() for p in (folder / "results").iterdir()} == before


SETTINGS_CASES = ["unknown optimizer", "unknown space", "malformed space", "zero lr", "storage not writable"]


@pytest.mark.parametrize("name", SETTINGS_CASES)
def test_bad_setting_is_reported_before_the_training_stack_loads(name, bad_files, smoke_files, tmp_path):
    """A study's settings (space, optimizer names, ranges, storage) are checked from the registries
    alone, so a typo costs well under a second instead of torch's import."""
    args, message = _case(bad_files, smoke_files, name)
    script = ("import sys; from study.launch import main; code = main(sys.argv[1:]); "
              "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded'); sys.exit(code)")
    command = [sys.executable, "-c", script, "--space", "lbfgs_refinement", "--storage", str(tmp_path), *args]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert message in run.stderr.strip().splitlines()[-1], run.stderr
    assert run.stdout.strip() == "torch not loaded"


def test_new_study_whose_data_fails_its_check_after_the_trials_started_leaves_nothing(bad_files, smoke_files,
                                                                                     tmp_path):
    """The trials start while the data is checked. Data whose error shows only after seconds of
    reading (an element the foundation lacks, in the last of 12000 configurations) stops
    them again, and the new study's folder is removed: the corrected command needs no --resume."""
    frames = smoke_files.train.read_text()
    count = frames.count("Properties=")
    big = tmp_path / "big_then_silicon.xyz"
    big.write_text(frames * (12000 // count + 1) + _last_frame(bad_files / "silicon.xyz"))
    storage = tmp_path / "studies"
    command = [sys.executable, "-m", "study.launch", "--space", "smoke", "--storage", str(storage), "--name", "late",
               "--train-file", str(big), "--foundation", str(smoke_files.foundation), "--e0s-file",
               str(smoke_files.e0s), "--mode", "naive", "--replay-samples", "none",
               "--verbose"]  # Tune's own output: its configuration box shows that the trials started
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 2, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "lacks element(s) Si" in last, last
    assert "Configuration for experiment" in run.stdout + run.stderr, "the trials did not start before the check failed"
    assert not (storage / "late").exists(), list((storage / "late").rglob("*"))


def _last_frame(path: Path) -> str:
    """The last configuration of an extxyz file, as text."""
    lines = path.read_text().splitlines(keepends=True)
    start = 0
    while start < len(lines):
        atoms = int(lines[start])
        if start + 2 + atoms >= len(lines):
            return "".join(lines[start:])
        start += 2 + atoms
    raise ValueError(f"no frame in {path}")
