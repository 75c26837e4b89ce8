"""Equation of state and cubic elastic constants of a conventional cubic cell.

Equation of state: energies of the cell scaled isotropically over [1 - s, 1 + s] of its edge
(`eos_points` points, s = `eos_max_strain`), fitted by `ase.eos.EquationOfState` (Birch-Murnaghan):
the equilibrium edge (the lattice constant of a conventional cell) and the bulk modulus (GPa).

Elastic constants (ASE has no helper): at the fitted equilibrium, central finite differences of the
stress (`get_stress`, Voigt order xx yy zz yz xz xy, positive in tension so that sigma = C epsilon)
over a strain of +-d (d = `elastic_strain`): e_xx = d gives C11 = dsigma_xx/d and C12 = dsigma_yy/d,
and the engineering shear gamma_yz = d (e_yz = e_zy = d/2) gives C44 = dsigma_yz/d. The ions stay
at their strained positions (clamped-ion constants): exact for lattices whose atoms all sit at
centres of inversion, such as fcc and L1_2, where homogeneous strain exerts no force on them.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.eos import EquationOfState

from trainables.properties.base import EvaluationFailed, Measurement, Outcome, PropertySettings, attached

UNITS = {"lattice_constant": "A", "bulk_modulus": "GPa", "c11": "GPa", "c12": "GPa", "c44": "GPa"}


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
    """C11, C12, C44 (GPa) of the cubic `atoms` (calculator attached) by central differences of stress."""
    axial, shear = np.zeros((3, 3)), np.zeros((3, 3))
    axial[0, 0] = strain
    shear[1, 2] = shear[2, 1] = strain / 2

    def slope(direction: np.ndarray) -> np.ndarray:
        plus, minus = (strained(atoms, sign * direction).get_stress(voigt=True) for sign in (1, -1))
        return (plus - minus) / (2 * strain) / units.GPa

    along_x, along_yz = slope(axial), slope(shear)
    return {"c11": float(along_x[0]), "c12": float(along_x[1]), "c44": float(along_yz[3])}


def measure_elastic(calculator: Calculator, cell: Atoms, settings: PropertySettings) -> Measurement:
    """Lattice constant (A), bulk modulus and C11, C12, C44 (GPa) at the calculator's own equilibrium."""
    atoms = attached(cell, calculator)
    lattice_constant, bulk_modulus = equation_of_state(atoms, settings)
    equilibrium = strained(atoms, (lattice_constant / atoms.cell.lengths()[0] - 1) * np.eye(3))
    return {"lattice_constant": lattice_constant, "bulk_modulus": bulk_modulus,
            **cubic_elastic_constants(equilibrium, settings.elastic_strain)}


def compare_elastic(measured: Measurement, reference: Measurement | None) -> dict[str, Outcome]:
    """Each property against the reference's; without one, the values alone (note "no reference")."""
    if reference is None:
        return {prop: Outcome(measured[prop], None, note="no reference") for prop in UNITS}
    return {prop: Outcome(measured[prop], reference[prop]) for prop in UNITS}
