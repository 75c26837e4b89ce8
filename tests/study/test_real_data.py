"""A user's data set shaped like the public molecular benchmarks, made here and run through
`python -m study.launch` to the report page.

GFN2-xTB labels (tblite), total energies shifted to DFT's size (about -1.2e4 eV for biphenyl: each
element's isolated-atom energy moved by a constant, in the data and its E0 file alike), and the sets
real benchmarks carry: a training set with energies and forces, an energy-only path whose points
differ by fractions of a meV, an energy-only file of dimer curves of three element pairs marked by
`config_type`, and a forces-only set. The config file names them relative to itself and the study
runs from another folder.
"""

import json
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

pytest.importorskip("tblite")

# eV added to each element's isolated-atom energy: biphenyl's total moves from ~ -560 to ~ -12,700 eV
OFFSETS = {"H": -3.0, "C": -1000.0, "N": -1400.0, "O": -2000.0}
PATH_POINTS = 15
DIMER_DISTANCES = (0.9, 1.1, 1.3, 1.6, 2.0)
SPACE = """
optimizers = ["adam", "schedulefree"]
lrs = [1e-3]
seeds = [0]
stages = ["first_order"]
[fixed]
epochs = 2
batch_size = 4
compile = false
"""


def _offset(atoms: Atoms) -> float:
    return sum(OFFSETS[symbol] for symbol in atoms.get_chemical_symbols())


def _labelled(atoms: Atoms, energy: float | None, forces: np.ndarray | None, **info) -> Atoms:
    """A copy carrying only the labels given (as a DFT code's output read by ASE would)."""
    copy = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions)
    copy.info.update(info)
    results = {**({"energy": energy} if energy is not None else {}), **({"forces": forces} if forces is not None else {})}
    copy.calc = SinglePointCalculator(copy, **results)
    return copy


def _xtb(atoms: Atoms) -> tuple[float, np.ndarray]:
    from trainables.embedded.xtb import xtb_calculator

    atoms = atoms.copy()
    atoms.calc = xtb_calculator()
    return atoms.get_potential_energy() + _offset(atoms), atoms.get_forces()


def _shifted(frames: list[Atoms], keep_energy=True, keep_forces=True) -> list[Atoms]:
    return [_labelled(a, a.get_potential_energy() + _offset(a) if keep_energy else None,
                      a.get_forces() if keep_forces else None, **{k: v for k, v in a.info.items()})
            for a in frames]


def _path(start: Atoms) -> list[Atoms]:
    """Points 0.0004 A apart along one fixed direction: neighbouring energies a fraction of a meV apart."""
    direction = np.random.default_rng(0).normal(size=start.positions.shape)
    direction /= np.linalg.norm(direction)
    points = []
    for k in range(PATH_POINTS):
        atoms = Atoms(start.get_chemical_symbols(), positions=start.positions + 4e-4 * k * direction)
        points.append(_labelled(atoms, _xtb(atoms)[0], None))
    return points


def _dimers() -> list[Atoms]:
    frames = []
    for pair in ("H-H", "N-N", "O-O"):
        for distance in DIMER_DISTANCES:
            atoms = Atoms(pair.replace("-", ""), positions=[[0, 0, 0], [0, 0, distance]])
            frames.append(_labelled(atoms, _xtb(atoms)[0], None, config_type=pair))
    return frames


@pytest.fixture(scope="module")
def user_study(smoke_files, launch, tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    data = root / "project" / "data"
    data.mkdir(parents=True)
    train = ase.io.read(smoke_files.train, ":")
    held_out = ase.io.read(smoke_files.tests["300K"], ":")
    e0s = [a for a in ase.io.read(smoke_files.e0s, ":")]
    ase.io.write(data / "train.xyz", _shifted(train))
    ase.io.write(data / "e0s.xyz", _shifted(e0s, keep_forces=False))
    ase.io.write(data / "test_md.xyz", _shifted(held_out))
    ase.io.write(data / "test_forces_only.xyz", _shifted(held_out[:4], keep_energy=False))
    ase.io.write(data / "test_path.xyz", _path(held_out[0]))
    ase.io.write(data / "test_dimers.xyz", _dimers())
    config = root / "project" / "study.toml"
    config.write_text(f"""
train_file = "data/train.xyz"
e0s_file = "data/e0s.xyz"
foundation = "{smoke_files.foundation}"
profile_tests = ["path", "dimers"]
[test_files]
md = "data/test_md.xyz"
forces_only = "data/test_forces_only.xyz"
path = "data/test_path.xyz"
dimers = "data/test_dimers.xyz"
""")
    space = root / "project" / "space.toml"
    space.write_text(SPACE)
    done = launch(root / "studies", "--config", str(config), "--name", "user", space=str(space))
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "studies" / "user", data, done.stdout


def _scores(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "results" / "scores.parquet")


def _file_profile(path: Path) -> np.ndarray:
    energies = np.array([a.get_potential_energy() for a in ase.io.read(path, ":")], dtype=np.float64)
    return 1000.0 * (energies - energies.min())


def test_relative_energies_of_a_dft_sized_path_are_those_of_the_file(user_study):
    folder, data, _ = user_study
    path = _scores(folder).query("test_set == 'path' and stage == 'first_order'")
    expected = _file_profile(data / "test_path.xyz")
    assert np.diff(np.sort(expected)).min() < 1.0  # neighbours closer than float32's spacing at this size
    for text in path["profile_reference_mev"]:
        np.testing.assert_allclose(json.loads(text), expected, rtol=0, atol=0.01)
    assert path["force_rmse_mev_a"].isna().all() and path["energy_rmse_mev_atom"].notna().all()


def test_each_dimer_curve_is_its_own_profile(user_study):
    folder, data, _ = user_study
    dimers = _scores(folder).query("test_set == 'dimers' and stage == 'first_order'")
    frames = ase.io.read(data / "test_dimers.xyz", ":")
    for _, row in dimers.iterrows():
        curves, reference = json.loads(row["profile_curve"]), np.array(json.loads(row["profile_reference_mev"]))
        assert curves == [a.info["config_type"] for a in frames]
        for pair in ("H-H", "N-N", "O-O"):
            mine = [i for i, curve in enumerate(curves) if curve == pair]
            expected = np.array([frames[i].get_potential_energy() for i in mine])
            np.testing.assert_allclose(reference[mine], 1000.0 * (expected - expected.min()), rtol=0, atol=0.01)
    assert dimers["rel_energy_rmse_mev"].notna().all()


def test_each_set_is_scored_on_the_labels_it_has_and_nothing_prints_nan(user_study):
    folder, _, stdout = user_study
    scores = _scores(folder).query("stage == 'first_order'")
    forces_only = scores.query("test_set == 'forces_only'")
    assert forces_only["energy_rmse_mev_atom"].isna().all() and forces_only["force_rmse_mev_a"].notna().all()
    assert set(scores["test_set"]) >= {"val", "val_before", "md", "forces_only", "path", "dimers"}
    assert "nan" not in stdout.lower()
    assert "zero-shot" in stdout
    page = (folder / "report" / "index.html").read_text()
    assert "zero-shot (the foundation before fine-tuning, on val)" in page and "Energy profiles" in page
