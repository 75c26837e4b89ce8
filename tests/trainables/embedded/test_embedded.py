"""Tests of the embedded systems: real smoke-size builds into temporary folders."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import ase.io
import numpy as np
import pytest

from trainables.embedded import (
    MANIFEST_NAME,
    SYSTEMS,
    SystemFiles,
    SystemUnavailableError,
    UnknownSizeError,
    UnknownSystemError,
    build_system,
    default_system_name,
)
from trainables.files import cache_root


def quiet(message: str) -> None:
    """A progress callback that discards messages."""


def read_all(files: SystemFiles) -> dict[str, list]:
    """Every file of a build, read back with ASE, keyed by role."""
    paths = {"pretrain": files.pretrain, "train": files.train, "e0s": files.e0s}
    paths.update({f"test_{name}": path for name, path in files.tests.items()})
    return {role: ase.io.read(path, ":") for role, path in paths.items()}


def assert_labelled(configs: list, with_stress: bool) -> None:
    assert configs
    for atoms in configs:
        assert np.isfinite(atoms.get_potential_energy())
        forces = atoms.get_forces()
        assert forces.shape == (len(atoms), 3) and np.isfinite(forces).all()
        assert atoms.info["config_type"]
        if with_stress:
            assert atoms.get_stress().shape == (6,) and np.isfinite(atoms.get_stress()).all()


@pytest.fixture(scope="module")
def emt_files(tmp_path_factory) -> SystemFiles:
    return build_system("cu3au-emt", "smoke", cache_root=tmp_path_factory.mktemp("emt"), progress=quiet)


@pytest.fixture(scope="module")
def xtb_files(tmp_path_factory) -> SystemFiles:
    pytest.importorskip("tblite")
    return build_system("biphenyl-xtb", "smoke", cache_root=tmp_path_factory.mktemp("xtb"), progress=quiet,
                        bundled=False)


def test_emt_smoke_build_is_labelled_with_stress(emt_files):
    assert emt_files.has_stress
    assert list(emt_files.tests) == ["300K", "600K", "1200K", "slab", "vacancy"]
    sets = read_all(emt_files)
    for role, configs in sets.items():
        assert_labelled(configs, with_stress=role != "e0s")
    assert {atoms.get_chemical_formula() for atoms in sets["train"]} == {"Au8Cu24"}
    assert {len(atoms) for atoms in sets["test_vacancy"]} == {31}
    assert {atoms.info["config_type"] for atoms in sets["e0s"]} == {"IsolatedAtom"}
    assert sorted(atoms.get_chemical_symbols()[0] for atoms in sets["e0s"]) == sorted(
        ["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"]
    )


def test_xtb_smoke_build_holds_out_biphenyl(xtb_files):
    assert not xtb_files.has_stress
    assert list(xtb_files.tests) == ["300K", "600K", "1200K", "dihedral"]
    sets = read_all(xtb_files)
    for configs in sets.values():
        assert_labelled(configs, with_stress=False)
    target_sets = [configs for role, configs in sets.items() if role not in ("pretrain", "e0s")]
    target_formulas = {atoms.get_chemical_formula() for configs in target_sets for atoms in configs}
    assert target_formulas == {"C12H10"}
    assert "C12H10" not in {atoms.get_chemical_formula() for atoms in sets["pretrain"]}
    assert {atoms.info["config_type"] for atoms in sets["pretrain"]} == {"pretrain_300K", "pretrain_800K"}
    assert [atoms.get_chemical_symbols()[0] for atoms in sets["e0s"]] == ["H", "C", "N", "O"]


def test_xtb_dihedral_scan_holds_its_angles_and_is_symmetric(xtb_files):
    from trainables.embedded.xtb import DIHEDRAL_ATOMS

    scan = ase.io.read(xtb_files.tests["dihedral"], ":")
    angles = [atoms.info["dihedral_deg"] for atoms in scan]
    assert angles == pytest.approx(np.linspace(0.0, 180.0, len(scan)).tolist())
    for atoms, angle in zip(scan, angles):
        measured = atoms.get_dihedral(*DIHEDRAL_ATOMS)  # in [0, 360); the mirror image reads 360 - angle
        assert min(abs(measured - angle), abs(360.0 - measured - angle)) < 0.5
    energies = np.array([atoms.get_potential_energy() for atoms in scan])
    # theta and 180 - theta are the same structure by ring symmetry.
    assert energies == pytest.approx(energies[::-1], abs=0.01)


def test_pretrain_molecules_are_closed_shell_chno():
    from trainables.embedded.xtb import pretrain_molecule_names

    names = pretrain_molecule_names()
    assert len(names) == 59
    assert "C3H4_C2v" in names and "C6H6" in names
    assert not {"O3", "CH2_s1A1d", "CH3", "OH", "NO", "O2"} & set(names)


@pytest.mark.parametrize("name", ["cu3au-emt", "biphenyl-xtb"])
def test_builds_are_reproducible(name, tmp_path):
    if SYSTEMS[name].requires:
        pytest.importorskip(SYSTEMS[name].requires)
    first = read_all(build_system(name, "smoke", cache_root=tmp_path / "a", progress=quiet, bundled=False))
    second = read_all(build_system(name, "smoke", cache_root=tmp_path / "b", progress=quiet, bundled=False))
    for role in first:
        assert len(first[role]) == len(second[role])
        for one, other in zip(first[role], second[role]):
            np.testing.assert_array_equal(one.positions, other.positions)
            assert one.get_potential_energy() == other.get_potential_energy()


def test_xtb_build_is_the_same_in_one_process_as_in_parallel(xtb_files, tmp_path, monkeypatch):
    import trainables.embedded.xtb as embedded_xtb

    monkeypatch.setattr(embedded_xtb.os, "sched_getaffinity", lambda pid: {0})
    serial = build_system("biphenyl-xtb", "smoke", cache_root=tmp_path, progress=quiet, bundled=False)
    for name in ["pretrain.extxyz", "train.extxyz", "e0s.extxyz", *(path.name for path in xtb_files.tests.values())]:
        assert (serial.root / name).read_bytes() == (xtb_files.root / name).read_bytes(), name


def test_cached_build_is_reused_and_rebuild_regenerates(tmp_path):
    messages = []
    files = build_system("cu3au-emt", "smoke", cache_root=tmp_path, progress=messages.append)
    manifest = files.root / MANIFEST_NAME
    built_at = manifest.stat().st_mtime_ns
    assert files.root == tmp_path / "v1" / "cu3au-emt-smoke"
    assert json.loads(manifest.read_text())["counts"]["train"] == 20

    messages.clear()
    assert build_system("cu3au-emt", "smoke", cache_root=tmp_path, progress=messages.append) == files
    assert manifest.stat().st_mtime_ns == built_at
    assert len(messages) == 1 and "cached" in messages[0]

    build_system("cu3au-emt", "smoke", cache_root=tmp_path, rebuild=True, progress=quiet)
    assert manifest.stat().st_mtime_ns != built_at


def test_build_without_manifest_is_redone(tmp_path):
    files = build_system("cu3au-emt", "smoke", cache_root=tmp_path, progress=quiet)
    (files.root / MANIFEST_NAME).unlink()
    files.train.write_text("truncated")
    build_system("cu3au-emt", "smoke", cache_root=tmp_path, progress=quiet)
    assert (files.root / MANIFEST_NAME).is_file()
    assert len(ase.io.read(files.train, ":")) == 20


def test_manifest_of_another_seed_is_not_reused(tmp_path):
    files = build_system("cu3au-emt", "smoke", cache_root=tmp_path, progress=quiet)
    manifest = files.root / MANIFEST_NAME
    stale = json.loads(manifest.read_text()) | {"seed": 1}
    manifest.write_text(json.dumps(stale))
    build_system("cu3au-emt", "smoke", cache_root=tmp_path, progress=quiet)
    assert json.loads(manifest.read_text())["seed"] == SYSTEMS["cu3au-emt"].seed


def test_unknown_system_lists_known_ones(tmp_path):
    with pytest.raises(UnknownSystemError, match="known systems: biphenyl-xtb, cu3au-emt"):
        build_system("water-dft", cache_root=tmp_path)


def test_unknown_size_lists_known_ones(tmp_path):
    with pytest.raises(UnknownSizeError, match="known sizes: full, smoke"):
        build_system("cu3au-emt", "huge", cache_root=tmp_path)


def test_missing_calculator_package_is_reported(tmp_path, monkeypatch):
    missing = dataclasses.replace(SYSTEMS["cu3au-emt"], requires="no_such_calculator_package")
    monkeypatch.setitem(SYSTEMS, "cu3au-emt", missing)
    with pytest.raises(SystemUnavailableError, match="pip install no_such_calculator_package"):
        build_system("cu3au-emt", "smoke", cache_root=tmp_path)


def test_default_system_follows_tblite_availability():
    expected = "biphenyl-xtb" if importlib.util.find_spec("tblite") else "cu3au-emt"
    assert default_system_name() == expected


def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTISTUDY_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("OPTISTUDY_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == Path(tmp_path / "home" / ".cache" / "optistudy")


def test_an_empty_cache_variable_means_the_default_cache(monkeypatch, tmp_path):
    """`OPTISTUDY_CACHE= cmd` must not build the default into the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OPTISTUDY_CACHE", "")
    assert cache_root() == tmp_path / ".cache" / "optistudy"
    monkeypatch.setenv("OPTISTUDY_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
