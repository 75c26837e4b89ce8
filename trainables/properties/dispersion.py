"""Phonon dispersion along a high-symmetry path (the paper's Fig. 4: frequencies per q point and
branch, and their error against the reference).

At the model's own equilibrium (as the acoustic phonons, `phonons.at_own_equilibrium`), phonopy's
force constants of the cell repeated `phonon_supercell` times (`phonons.phonopy_frequencies_thz`)
give every branch at `dispersion_q_points` q points along the cell's high-symmetry path, the one
ASE's `Cell.bandpath` gives for its Bravais lattice (Setyawan & Curtarolo, Comput. Mater. Sci. 49,
299 (2010); simple cubic L1_2 Cu3Au: Gamma-X-M-Gamma-R-X|M-R). The frequencies are compared q point
by q point and branch by branch, in ascending order at each q (THz; imaginary ones negative):

- `dispersion_mae`: the mean |model - reference| over every q point and branch (THz);
- `dispersion_max_error`: the largest |model - reference| and, in its note, where (q point, branch).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from trainables.properties.base import Measurement, Outcome, PropertySettings, attached, skipped
from trainables.properties.phonons import at_own_equilibrium, phonopy_frequencies_thz

UNITS = {"dispersion_mae": "THz", "dispersion_max_error": "THz"}


def band_path(atoms: Atoms, points: int) -> tuple[np.ndarray, str]:
    """(`points` q points along the high-symmetry path of `atoms`' cell, fractional in its reciprocal
    basis; the path as ASE writes it, e.g. 'GXMGRX,MR')."""
    path = atoms.cell.bandpath(npoints=points)
    return path.kpts, path.path


def measure_dispersion(calculator: Calculator, cell: Atoms, settings: PropertySettings) -> Measurement:
    """Every branch's frequency (THz, ascending per q) along the cell's high-symmetry path."""
    atoms = at_own_equilibrium(attached(cell, calculator), settings)
    qpoints, path = band_path(atoms, settings.dispersion_q_points)
    frequencies = phonopy_frequencies_thz(atoms, calculator, settings.phonon_supercell, settings.displacement_A,
                                          qpoints)
    return {"path": path, "qpoints": qpoints.tolist(), "frequencies_thz": frequencies.tolist()}


def compare_dispersion(measured: Measurement, reference: Measurement | None) -> dict[str, Outcome]:
    """MAE and max |error| over q points and branches against the reference's dispersion on the same path."""
    if reference is None:
        return {prop: skipped("no reference dispersion") for prop in UNITS}
    errors = np.abs(np.asarray(measured["frequencies_thz"]) - np.asarray(reference["frequencies_thz"]))
    q, branch = np.unravel_index(int(errors.argmax()), errors.shape)
    q_point = np.round(measured["qpoints"][q], 3).tolist()
    where = f"at q = {q_point} (point {q} of path {measured['path']}), branch {branch}"
    return {"dispersion_mae": Outcome(float(errors.mean()), 0.0),
            "dispersion_max_error": Outcome(float(errors.max()), 0.0, note=where)}
