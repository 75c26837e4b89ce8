"""Harmonic frequencies: molecular vibrations (`ase.vibrations.Vibrations`) and phonons at Gamma
(`ase.phonons.Phonons`), in cm^-1, imaginary frequencies reported as negative numbers.

Molecules: the model first relaxes the reference minimum (`ase.optimize.BFGS`), so that each
model is judged at its own minimum. The finite-difference Hessian, mass-weighted, is projected onto
the complement of the rigid translations and rotations about the centre of mass (the Eckart
conditions; Wilson, Decius & Cross, "Molecular Vibrations", 1955, and Gaussian's "Vibrational
Analysis in Gaussian" white paper) and diagonalised there: exactly 3N-6 (3N-5 if linear)
vibrational frequencies, whatever the residual forces or a model's broken rotational invariance
leave on the rigid motions. (Dropping the six smallest |omega| instead keeps left-over rotations at
15-30 cm^-1 and drops a real torsion below them.) The sorted modes are compared with the
reference's: mean absolute and largest absolute error.

Crystals: the finite-displacement force constants of the given cell (`supercell=(1, 1, 1)`: the
Gamma point of that cell is exact, and a supercell folds its zone-boundary modes onto Gamma), read
by the "standard" method without restoring the acoustic sum rule. The three acoustic frequencies
should be 0: the largest of the three smallest |frequencies| is the sum-rule violation, a sanity
check (any translation-invariant model, MACE included, passes it up to finite-difference rounding,
about 1e-5 cm^-1), reported unranked. Soft acoustic branches are a small-q effect that Gamma cannot
show: see `phonons.py`. The other modes, sorted, are compared with the reference's (MAE).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.optimize import BFGS
from ase.phonons import Phonons
from ase.vibrations import Vibrations

from trainables.properties.base import (
    EvaluationFailed, Measurement, Outcome, PropertySettings, attached, skipped,
)

VIBRATION_UNITS = {"vib_frequency_mae": "cm^-1", "vib_frequency_max_error": "cm^-1"}
PHONON_UNITS = {"phonon_acoustic_sum_rule": "cm^-1", "phonon_gamma_mae": "cm^-1"}
ACOUSTIC_MODES = 3
# A rigid-motion vector below this fraction of the longest is no motion (the rotation about a
# linear molecule's axis).
RIGID_RANK_TOLERANCE = 1e-6


def signed_real(frequencies: np.ndarray) -> np.ndarray:
    """Complex frequencies as reals, an imaginary one as minus its magnitude (ASE's convention)."""
    frequencies = np.asarray(frequencies)
    if not np.iscomplexobj(frequencies):
        return frequencies.astype(float)
    return np.where(np.abs(frequencies.imag) > 0, -np.abs(frequencies.imag), frequencies.real)


def rigid_and_internal_bases(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal bases of mass-weighted Cartesian space (3N, atom-major as ASE's Hessian): the
    rigid translations and infinitesimal rotations about the centre of mass (3N x 6, or 3N x 5 for a
    linear molecule) and its orthogonal complement, the internal motions (3N x 3N-6 or 3N-5)."""
    sqrt_masses = np.sqrt(atoms.get_masses())[:, None]
    centred = atoms.positions - atoms.get_center_of_mass()
    motions = [sqrt_masses * np.broadcast_to(axis, centred.shape) for axis in np.eye(3)]
    motions += [sqrt_masses * np.cross(axis, centred) for axis in np.eye(3)]
    vectors, singular, _ = np.linalg.svd(np.stack([m.ravel() for m in motions], axis=1), full_matrices=True)
    rank = int((singular > RIGID_RANK_TOLERANCE * singular.max()).sum())
    return vectors[:, :rank], vectors[:, rank:]


def mass_weighted(hessian: np.ndarray, atoms: Atoms) -> np.ndarray:
    """M^-1/2 H M^-1/2 of a Cartesian Hessian (eV/A^2, 3N x 3N atom-major), in eV/(A^2 amu)."""
    weights = np.repeat(atoms.get_masses() ** -0.5, 3)
    return weights[:, None] * hessian * weights[None, :]


def projected_hessian(hessian: np.ndarray, atoms: Atoms) -> np.ndarray:
    """The mass-weighted Hessian with rigid translations and rotations projected out, P H P with
    P = 1 - R R^T (R: `rigid_and_internal_bases`' rigid basis): 6 (5) zero modes and the internal ones."""
    rigid, _ = rigid_and_internal_bases(atoms)
    projector = np.eye(len(rigid)) - rigid @ rigid.T
    return projector @ mass_weighted(hessian, atoms) @ projector


def vibrational_frequencies(hessian: np.ndarray, atoms: Atoms) -> np.ndarray:
    """The 3N-6 (3N-5 if linear) vibrational frequencies (cm^-1, ascending, imaginary negative) of a
    Cartesian Hessian (eV/A^2) at the geometry `atoms`: the mass-weighted Hessian diagonalised on the
    internal motions only."""
    _, internal = rigid_and_internal_bases(atoms)
    omega_squared = np.linalg.eigvalsh(internal.T @ mass_weighted(hessian, atoms) @ internal)
    to_energy = units._hbar * units.m / np.sqrt(units._e * units._amu)  # sqrt(eV/(A^2 amu)) -> eV, as ASE's
    return np.sort(signed_real(to_energy * omega_squared.astype(complex) ** 0.5) / units.invcm)


def relaxed(atoms: Atoms, settings: PropertySettings) -> Atoms:
    """`atoms` relaxed to `relax_fmax_eV_A`; EvaluationFailed if it does not get there in `relax_steps`."""
    if not BFGS(atoms, logfile=None).run(fmax=settings.relax_fmax_eV_A, steps=settings.relax_steps):
        fmax = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
        raise EvaluationFailed(f"relaxation not converged in {settings.relax_steps} steps (fmax {fmax:.3g} eV/A)")
    return atoms


def measure_vibrations(calculator: Calculator, minimum: Atoms, settings: PropertySettings) -> Measurement:
    """The vibrational frequencies (cm^-1, ascending) at the calculator's own relaxed minimum."""
    atoms = relaxed(attached(minimum, calculator), settings)
    with tempfile.TemporaryDirectory() as folder:  # Vibrations caches displaced forces on disk
        vibrations = Vibrations(atoms, name=str(Path(folder) / "vib"), delta=settings.displacement_A)
        vibrations.run()
        hessian = vibrations.get_vibrations().get_hessian_2d()
    return {"frequencies_cm1": vibrational_frequencies(hessian, atoms).tolist()}


def compare_vibrations(measured: Measurement, reference: Measurement | None) -> dict[str, Outcome]:
    errors = _mode_errors(measured["frequencies_cm1"], reference["frequencies_cm1"])
    if isinstance(errors, str):
        return {prop: skipped(errors) for prop in VIBRATION_UNITS}
    return {"vib_frequency_mae": Outcome(float(errors.mean()), 0.0),
            "vib_frequency_max_error": Outcome(float(errors.max()), 0.0)}


def measure_phonons_gamma(calculator: Calculator, cell: Atoms, settings: PropertySettings) -> Measurement:
    """All 3N frequencies at Gamma (cm^-1, ascending), force constants without the sum rule imposed."""
    atoms = attached(cell, calculator)
    with tempfile.TemporaryDirectory() as folder:
        phonons = Phonons(atoms, calculator, supercell=(1, 1, 1), name=str(Path(folder) / "phonon"),
                          delta=settings.displacement_A)
        phonons.run()
        phonons.read(method="standard", acoustic=False)
        energies = phonons.band_structure([[0.0, 0.0, 0.0]], verbose=False)[0]
    return {"frequencies_cm1": np.sort(signed_real(energies) / units.invcm).tolist()}


def compare_phonons_gamma(measured: Measurement, reference: Measurement | None) -> dict[str, Outcome]:
    frequencies = np.asarray(measured["frequencies_cm1"])
    by_magnitude = np.argsort(np.abs(frequencies))
    violation = float(np.abs(frequencies[by_magnitude[:ACOUSTIC_MODES]]).max())
    outcomes = {"phonon_acoustic_sum_rule": Outcome(violation, 0.0)}
    if reference is None:
        outcomes["phonon_gamma_mae"] = skipped("no reference frequencies at Gamma")
        return outcomes
    errors = _mode_errors(_optical(frequencies), _optical(np.asarray(reference["frequencies_cm1"])))
    outcomes["phonon_gamma_mae"] = skipped(errors) if isinstance(errors, str) else Outcome(float(errors.mean()), 0.0)
    return outcomes


def _optical(frequencies: np.ndarray) -> np.ndarray:
    return np.sort(frequencies[np.argsort(np.abs(frequencies))][ACOUSTIC_MODES:])


def _mode_errors(model: list[float], reference: list[float]) -> np.ndarray | str:
    """|model - reference| mode by mode in ascending order, or why they cannot be compared."""
    if len(model) != len(reference):
        return f"{len(model)} modes against {len(reference)} reference modes"
    return np.abs(np.sort(model) - np.sort(reference))
