"""Generalized stacking-fault energy (GSFE) along a slip path (Vitek, Philos. Mag. 18, 773 (1968);
the paper's Fig. 3c-d).

The conventional cubic cell (fcc, bcc or an ordered cubic alloy such as L1_2), scaled to the
model's equation-of-state edge (`elastic.equation_of_state`), is cut by `ase.build.cut` into a slab
of `gsfe_layers` atomic planes parallel to `gsfe_plane` (Miller indices of the cubic cell) with
`gsfe_vacuum_A` of vacuum above it. The upper half of the planes is shifted rigidly by s *
`gsfe_shift` (a vector in the plane, in units of the cubic cell's edges; the default 1/6[11-2] on
(111) ends at fcc's intrinsic stacking fault) for `gsfe_points` values of s in [0, 1]; at each shift
every atom relaxes along the plane's normal only (`ase.constraints.FixedLine`), as in the paper.
gamma(s) = (E(s) - E(0)) / A, A the slab's in-plane area, in J/m^2. Reported:

- `gsfe_rmse`: RMSE of gamma over the path against the reference (J/m^2);
- `unstable_stacking_fault`: the path's maximum gamma, the unstable stacking-fault energy (J/m^2);
- `gsfe_path_end`: gamma at s = 1 (J/m^2; the intrinsic stacking fault on the default path).
"""

from __future__ import annotations

import itertools

import numpy as np
from ase import Atoms, units
from ase.build import cut
from ase.calculators.calculator import Calculator
from ase.constraints import FixedLine

from trainables.errors import ConfigError
from trainables.properties.base import Measurement, Outcome, PropertySettings, attached, skipped
from trainables.properties.elastic import equation_of_state, strained
from trainables.properties.vibrations import relaxed

UNITS = {"gsfe_rmse": "J/m^2", "unstable_stacking_fault": "J/m^2", "gsfe_path_end": "J/m^2"}
EV_PER_A2_TO_J_PER_M2 = units._e * 1e20
SMALL_VECTORS = np.array([v for v in itertools.product(range(-3, 4), repeat=3) if any(v)])


def in_plane_vectors(plane: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two integer vectors of the cubic cell spanning its lattice in `plane`, right-handed about its
    normal: the shortest pair whose cell has the plane's primitive area, |hkl| / gcd(h, k, l) edges squared."""
    normal = np.asarray(plane)  # not zero: PropertySettings.check
    in_plane = SMALL_VECTORS[SMALL_VECTORS @ normal == 0]
    in_plane = in_plane[np.argsort(np.linalg.norm(in_plane, axis=1), kind="stable")]
    area = np.linalg.norm(normal) / np.gcd.reduce(normal)
    for i, first in enumerate(in_plane):
        for second in in_plane[i + 1:]:
            normal_part = np.cross(first, second) @ normal
            if np.isclose(abs(normal_part), area * np.linalg.norm(normal)):
                return (first, second) if normal_part > 0 else (second, first)  # the slab's c along +normal
    raise ConfigError(f"gsfe_plane {tuple(plane)} has no in-plane lattice vectors with components within +-3")


def fault_slab(cell: Atoms, settings: PropertySettings) -> tuple[Atoms, np.ndarray]:
    """(the slab of `gsfe_layers` planes of the cubic `cell` parallel to `gsfe_plane` with vacuum
    above, the indices of its upper half's atoms). The slab keeps `cell`'s Cartesian frame."""
    first, second = in_plane_vectors(settings.gsfe_plane)
    slab = cut(cell, first, second, nlayers=settings.gsfe_layers)
    heights = slab.get_scaled_positions()[:, 2]
    planes = np.unique(np.round(heights, 6))
    upper = np.flatnonzero(heights >= planes[len(planes) // 2] - 1e-6)
    normal_vector = slab.cell[2]
    slab.set_cell([slab.cell[0], slab.cell[1],
                   normal_vector * (1 + settings.gsfe_vacuum_A / np.linalg.norm(normal_vector))])
    slab.pbc = (True, True, False)
    return slab, upper


def shift_vector(cell: Atoms, settings: PropertySettings) -> np.ndarray:
    """`gsfe_shift` (in the plane: `PropertySettings.check`) in A, Cartesian in `cell`'s frame."""
    return np.asarray(settings.gsfe_shift, dtype=float) @ np.asarray(cell.cell)


def fault_energy(slab: Atoms, upper: np.ndarray, shift: np.ndarray, settings: PropertySettings) -> float:
    """Energy (eV) of `slab` (calculator attached) with `upper` shifted by `shift` (A), relaxed along the normal."""
    faulted = slab.copy()
    faulted.calc = slab.calc
    faulted.positions[upper] += shift
    normal = np.cross(slab.cell[0], slab.cell[1])
    faulted.set_constraint(FixedLine(np.arange(len(faulted)), normal / np.linalg.norm(normal)))
    return float(relaxed(faulted, settings).get_potential_energy())


def measure_stacking_fault(calculator: Calculator, cell: Atoms, settings: PropertySettings) -> Measurement:
    """gamma(s) (J/m^2) at the `gsfe_points` shifts s in [0, 1] along the slip path."""
    cubic = attached(cell, calculator)
    edge, _ = equation_of_state(cubic, settings)
    cubic = strained(cubic, (edge / cubic.cell.lengths()[0] - 1) * np.eye(3))
    slab, upper = fault_slab(cubic, settings)
    slab.calc = calculator
    fractions = np.linspace(0.0, 1.0, settings.gsfe_points)
    energies = np.array([fault_energy(slab, upper, s * shift_vector(cubic, settings), settings) for s in fractions])
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    return {"fractions": fractions.tolist(),
            "gsfe_j_m2": ((energies - energies[0]) / area * EV_PER_A2_TO_J_PER_M2).tolist()}


def compare_stacking_fault(measured: Measurement, reference: Measurement | None) -> dict[str, Outcome]:
    """The GSFE's RMSE over the path, its maximum and its end against the reference's."""
    gamma = np.asarray(measured["gsfe_j_m2"])
    if reference is None:
        return {"gsfe_rmse": skipped("no reference GSFE"),
                "unstable_stacking_fault": Outcome(float(gamma.max()), None, note="no reference"),
                "gsfe_path_end": Outcome(float(gamma[-1]), None, note="no reference")}
    expected = np.asarray(reference["gsfe_j_m2"])
    at = f"maximum at s = {measured['fractions'][int(gamma.argmax())]:.3g} (reference: " \
         f"{reference['fractions'][int(expected.argmax())]:.3g})"
    return {"gsfe_rmse": Outcome(float(np.sqrt(np.mean((gamma - expected) ** 2))), 0.0),
            "unstable_stacking_fault": Outcome(float(gamma.max()), float(expected.max()), note=at),
            "gsfe_path_end": Outcome(float(gamma[-1]), float(expected[-1]))}
