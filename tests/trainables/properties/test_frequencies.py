"""Frequencies on known answers: the Eckart projection of a molecule's Hessian (rigid rotations
give zero modes, real modes are unchanged, a planted low torsion is kept) and EMT copper's acoustic
phonons near Gamma against ASE's own phonon code and against its elastic constants."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.phonons import Phonons
from ase.vibrations import Vibrations
from scipy.spatial.transform import Rotation

from trainables.properties import OK, PropertySettings, PropertyStructures, compute_references, evaluate_properties
from trainables.properties.elastic import strained
from trainables.properties.phonons import q_points
from trainables.properties.vibrations import (
    mass_weighted, projected_hessian, rigid_and_internal_bases, vibrational_frequencies,
)

CM1_TO_OMEGA_SQUARED = (units.invcm / (units._hbar * units.m / np.sqrt(units._e * units._amu))) ** 2


def emt_hessian(atoms: Atoms) -> np.ndarray:
    """EMT's finite-difference Hessian (eV/A^2) of `atoms` where they are (not relaxed)."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    with tempfile.TemporaryDirectory() as folder:
        vibrations = Vibrations(atoms, name=str(Path(folder) / "vib"), delta=0.01)
        vibrations.run()
        return vibrations.get_vibrations().get_hessian_2d()


def cartesian(hessian_mass_weighted: np.ndarray, atoms: Atoms) -> np.ndarray:
    """The inverse of `mass_weighted`: M^1/2 H M^1/2."""
    roots = np.repeat(np.sqrt(atoms.get_masses()), 3)
    return roots[:, None] * hessian_mass_weighted * roots[None, :]


def rotated(atoms: Atoms, hessian: np.ndarray, rotation: np.ndarray) -> tuple[Atoms, np.ndarray]:
    """`atoms` rigidly rotated by `rotation` (3x3) about the origin, and its Hessian rotated with it."""
    turned = atoms.copy()
    turned.positions = atoms.positions @ rotation.T
    block = np.kron(np.eye(len(atoms)), rotation)
    return turned, block @ hessian @ block.T


def test_a_rigid_rotation_leaves_six_zero_modes_and_the_real_ones_unchanged():
    methanol = molecule("CH3OH")  # EMT knows C, H, O: a Hessian with real, unequal modes
    hessian = emt_hessian(methanol)
    frequencies = vibrational_frequencies(hessian, methanol)
    assert len(frequencies) == 3 * len(methanol) - 6

    turned, turned_hessian = rotated(methanol, hessian, Rotation.from_euler("zyx", [40, 25, -70], degrees=True)
                                     .as_matrix())
    projected = np.linalg.eigh(projected_hessian(turned_hessian, turned))
    rigid, _ = rigid_and_internal_bases(turned)
    zero = np.abs(projected.eigenvalues) < 1e-10 * np.abs(projected.eigenvalues).max()
    assert zero.sum() == 6
    # the zero modes are the rigid motions: their span is the rigid basis'
    assert np.allclose(rigid @ (rigid.T @ projected.eigenvectors[:, zero]), projected.eigenvectors[:, zero])
    np.testing.assert_allclose(vibrational_frequencies(turned_hessian, turned), frequencies, atol=1e-6)

    # forces left on rigid rotations (a model's broken invariance, a loose relaxation) change nothing
    contamination = sum(k * np.outer(r, r) for k, r in zip((30.0, 20.0, 15.0, 5.0, 5.0, 5.0), rigid.T))
    contaminated = turned_hessian + cartesian(CM1_TO_OMEGA_SQUARED * contamination, turned)
    np.testing.assert_allclose(vibrational_frequencies(contaminated, turned), frequencies, atol=1e-6)


def test_a_planted_low_torsion_is_kept_and_left_over_rotations_are_not():
    methanol = molecule("CH3OH")
    rigid, internal = rigid_and_internal_bases(methanol)
    planted = np.array([25.0, *np.linspace(300.0, 3000.0, internal.shape[1] - 1)])  # a 25 cm^-1 torsion
    left_over = np.array([0.0, 0.0, 0.0, 30.0, 35.0, 40.0])                       # rotations not quite zero
    omega_squared = np.concatenate([left_over, planted]) ** 2 * CM1_TO_OMEGA_SQUARED
    modes = np.hstack([rigid, internal])
    hessian = cartesian(modes @ np.diag(omega_squared) @ modes.T, methanol)
    np.testing.assert_allclose(vibrational_frequencies(hessian, methanol), planted, rtol=1e-9)
    everything = np.sqrt(np.linalg.eigvalsh(mass_weighted(hessian, methanol)).clip(0) / CM1_TO_OMEGA_SQUARED)
    six_smallest_dropped = np.sort(everything)[6:]
    assert six_smallest_dropped.min() == pytest.approx(40.0)  # the old way: a rotation kept, the torsion lost


def test_a_linear_molecule_has_five_rigid_modes():
    co2 = molecule("CO2")
    rigid, internal = rigid_and_internal_bases(co2)
    assert (rigid.shape[1], internal.shape[1]) == (5, 4)
    assert len(vibrational_frequencies(emt_hessian(co2), co2)) == 4


def ase_phonon_frequencies_thz(cell: Atoms, supercell: int, qpoints: np.ndarray) -> np.ndarray:
    """EMT's frequencies (THz, ascending) at `qpoints` (fractional, reciprocal basis of `cell`) by ASE's
    own finite-displacement phonons, a code independent of phonopy."""
    atoms = cell.copy()
    with tempfile.TemporaryDirectory() as folder:
        phonons = Phonons(atoms, EMT(), supercell=(supercell,) * 3, name=str(Path(folder) / "ph"), delta=0.01)
        phonons.run()
        phonons.read(method="standard", acoustic=False)
        energies_eV = phonons.band_structure(qpoints, verbose=False)  # q in the reciprocal basis, as phonopy's
    return np.sort(energies_eV.real * units._e / units._hplanck / 1e12, axis=1)


def test_emt_copper_acoustic_phonons_match_ase_phonons_and_the_elastic_constants():
    copper = bulk("Cu", "fcc", a=3.6, cubic=True)
    settings = PropertySettings(evaluators=("acoustic_phonons", "elastic"), phonon_supercell=3)
    structures = PropertyStructures(cubic_cell=copper)
    references = compute_references(EMT(), structures, settings)
    rows = {row["property"]: row for row in evaluate_properties(EMT(), structures, references, settings)}
    assert all(row["status"] == OK for row in rows.values())
    assert rows["acoustic_frequency_mae"]["value"] == pytest.approx(0.0, abs=1e-9)  # EMT against itself

    edge = rows["lattice_constant"]["value"]  # the evaluator works at EMT's own equilibrium
    at_minimum = strained(copper, (edge / 3.6 - 1) * np.eye(3))
    expected_thz = ase_phonon_frequencies_thz(at_minimum, 3, q_points(settings.phonon_q_fraction))[:, :3]
    measured_cm1 = np.asarray(references["acoustic_phonons"]["acoustic_cm1"])
    thz_to_cm1 = 1e12 / (units._c * 100)
    np.testing.assert_allclose(measured_cm1, expected_thz * thz_to_cm1, rtol=1e-4)

    # long waves: v_T = sqrt(C44 / rho), v_L = sqrt(C11 / rho) along [100] of a cubic crystal
    density = at_minimum.get_masses().sum() * units._amu / (at_minimum.get_volume() * 1e-30)  # kg/m^3
    for prop, constant in (("sound_velocity_ta", "c44"), ("sound_velocity_la", "c11")):
        long_wave = np.sqrt(rows[constant]["value"] * 1e9 / density) / 1000  # km/s
        assert rows[prop]["value"] == pytest.approx(long_wave, rel=0.02), prop  # q = 0.1: a little dispersion
