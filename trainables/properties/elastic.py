"""Equation of state and cubic elastic constants of a conventional cubic cell.

Equation of state: energies of the cell scaled isotropically over [1 - s, 1 + s] of its edge
(`eos_points` points, s = `eos_max_strain`), fitted by `ase.eos.EquationOfState` (Birch-Murnaghan):
the equilibrium edge (the lattice constant of a conventional cell) and the bulk modulus (GPa).

Elastic constants (ASE has no helper): at the fitted equilibrium, central finite differences of the
stress (`get_stress`, Voigt order xx yy zz yz xz xy, positive in tension so that sigma = C epsilon)
over a strain of +-d (d = `elastic_strain`): e_xx = d gives C11 = dsigma_xx/d and C12 = dsigma_yy/d,
and the engineering shear gamma_yz = d (e_yz = e_zy = d/2) gives C44 = dsigma_yz/d. Poisson's ratio for uniaxial stress along a
cube axis: nu = C12 / (C11 + C12).

The ions stay at their strained positions (clamped-ion constants): exact for lattices whose atoms
all sit at centres of inversion, such as fcc and L1_2, where homogeneous strain exerts no force on
them. Elsewhere (diamond, zincblende, most ordered alloys) the strained atoms feel forces and would
relax, lowering the constant (Kleinman's internal relaxation): where the largest force on an atom of
the strained cells exceeds `elastic_max_residual_force_eV_A`, the constants that strain gave (C11,
C12 and nu from the axial strain, C44 from the shear) keep their value with a note saying so.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.eos import EquationOfState

from trainables.properties.base import EvaluationFailed, Measurement, Outcome, PropertySettings, attached

UNITS = {"lattice_constant": "A", "bulk_modulus": "GPa", "c11": "GPa", "c12": "GPa", "c44": "GPa",
         "poisson_ratio": "1"}
# Which strain each constant comes from (the residual forces of that strain qualify it).
FROM_STRAIN = {"c11": "axial", "c12": "axial", "poisson_ratio": "axial", "c44": "shear"}


def strained(atoms: Atoms, strain: np.ndarray) -> Atoms:
    """A copy of `atoms` under the symmetric strain tensor `strain` (3x3), atoms moved with the cell."""
    copy = atoms.copy()
    copy.set_cell(atoms.cell @ (np.eye(3) + strain), scale_atoms=True)
    copy.calc = atoms.calc
    return copy


def equation_of_state(atoms: Atoms, settings: PropertySettings) -> tuple[float, float]:
    """(equilibrium cell edge in A, bulk modulus in GPa) of the cubic `atoms` (calculator attached)."""
    scales = np.linspace(1 - settings.eos_max_strain, 1 + settings.eos_max_strain, settings.eos_points)
    cells = [strained(atoms, (scale - 1) * np.eye(3)) for scale in scales]
    volumes = [cell.get_volume() for cell in cells]
    energies = [cell.get_potential_energy() for cell in cells]
    if not np.isfinite(energies).all():
        raise EvaluationFailed("non-finite energy in the equation-of-state scan")
    volume, _, modulus = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    if not volumes[0] <= volume <= volumes[-1]:
        raise EvaluationFailed(f"equation-of-state minimum {volume:.2f} A^3 outside the scanned "
                               f"{volumes[0]:.2f}-{volumes[-1]:.2f} A^3")
    return float(atoms.cell.lengths()[0] * (volume / atoms.get_volume()) ** (1 / 3)), float(modulus / units.GPa)


def cubic_elastic_constants(atoms: Atoms, strain: float) -> dict[str, float]:
    """C11, C12, C44 (GPa) of the cubic `atoms` (calculator attached) by central differences of
    stress, Poisson's ratio, and the largest force on an atom (eV/A) of the axially strained and of
    the sheared cells (`max_force_axial_eV_A`, `max_force_shear_eV_A`)."""
    axial, shear = np.zeros((3, 3)), np.zeros((3, 3))
    axial[0, 0] = strain
    shear[1, 2] = shear[2, 1] = strain / 2

    def slope_and_force(direction: np.ndarray) -> tuple[np.ndarray, float]:
        cells = [strained(atoms, sign * direction) for sign in (1, -1)]
        plus, minus = (cell.get_stress(voigt=True) for cell in cells)
        force = max(float(np.linalg.norm(cell.get_forces(), axis=1).max()) for cell in cells)
        return (plus - minus) / (2 * strain) / units.GPa, force

    (along_x, axial_force), (along_yz, shear_force) = slope_and_force(axial), slope_and_force(shear)
    c11, c12 = float(along_x[0]), float(along_x[1])
    return {"c11": c11, "c12": c12, "c44": float(along_yz[3]), "poisson_ratio": c12 / (c11 + c12),
            "max_force_axial_eV_A": axial_force, "max_force_shear_eV_A": shear_force}


def measure_elastic(calculator: Calculator, cell: Atoms, settings: PropertySettings) -> Measurement:
    """Lattice constant (A), bulk modulus and C11, C12, C44 (GPa), Poisson's ratio at the
    calculator's own equilibrium, and `max_residual_force_eV_A` (the setting, to qualify them)."""
    atoms = attached(cell, calculator)
    lattice_constant, bulk_modulus = equation_of_state(atoms, settings)
    equilibrium = strained(atoms, (lattice_constant / atoms.cell.lengths()[0] - 1) * np.eye(3))
    return {"lattice_constant": lattice_constant, "bulk_modulus": bulk_modulus,
            **cubic_elastic_constants(equilibrium, settings.elastic_strain),
            "max_residual_force_eV_A": settings.elastic_max_residual_force_eV_A}


def compare_elastic(measured: Measurement, reference: Measurement | None) -> dict[str, Outcome]:
    """Each property against the reference's; without one, the values alone (note "no reference").
    A constant whose strained atoms feel forces above the threshold says so in its note."""
    notes = {prop: clamped_ion_note(measured, FROM_STRAIN[prop]) for prop in FROM_STRAIN}
    if reference is None:
        return {prop: Outcome(measured[prop], None, note=_joined("no reference", notes.get(prop, "")))
                for prop in UNITS}
    return {prop: Outcome(measured[prop], reference[prop], note=notes.get(prop, "")) for prop in UNITS}


def clamped_ion_note(measured: Measurement, strain: str) -> str:
    """Why a clamped-ion constant of `strain` ("axial" or "shear") may overestimate the relaxed-ion
    one (its strained atoms feel forces above the threshold), or ""."""
    force, threshold = measured[f"max_force_{strain}_eV_A"], measured["max_residual_force_eV_A"]
    if force <= threshold:
        return ""
    return (f"clamped-ion: atoms of the {strain}-strained cell feel up to {force:.3g} eV/A (threshold "
            f"{threshold:g}); the relaxed-ion constant, with those atoms relaxed, differs")


def _joined(*notes: str) -> str:
    return "; ".join(note for note in notes if note)
