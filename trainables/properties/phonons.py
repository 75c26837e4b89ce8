"""Acoustic phonons near Gamma from supercell force constants (phonopy, Togo & Tanaka, Scr. Mater.
108, 1 (2015)), the small-q effect that Gamma alone cannot show (the paper's soft acoustic branches).

At the model's own equilibrium (the cell scaled isotropically to its equation-of-state minimum,
see `elastic.equation_of_state`, then the positions relaxed in that cell), phonopy displaces the
symmetry-distinct atoms of the cell repeated `phonon_supercell` times along each axis by
`displacement_A`; the calculator's forces on those supercells give the force constants (no sum rule
or symmetry imposed beyond phonopy's site symmetry, so a model is judged as it is). Frequencies at
q = f d/|d| in the cell's reciprocal basis, f = `phonon_q_fraction`, d = [100], [110], [111]; the three
lowest at each q are the acoustic ones (imaginary frequencies as negative numbers). Reported:

- `acoustic_frequency_mae`: mean |model - reference| over the three acoustic branches at the three
  q points (cm^-1);
- `sound_velocity_ta`, `sound_velocity_la`: omega/|q| along [100] of the transverse (the mean of the
  two lowest) and longitudinal (the third) branch (km/s); for a cubic crystal in the long-wave limit
  sqrt(C44/rho) and sqrt(C11/rho).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator

from trainables.properties.base import Measurement, Outcome, PropertySettings, attached, skipped
from trainables.properties.elastic import equation_of_state, strained
from trainables.properties.vibrations import ACOUSTIC_MODES, relaxed

UNITS = {"acoustic_frequency_mae": "cm^-1", "sound_velocity_ta": "km/s", "sound_velocity_la": "km/s"}
DIRECTIONS = ((1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (1.0, 1.0, 1.0))  # the first gives the sound velocities
THZ_TO_CM1 = 1e12 / (units._c * 100.0)
THZ_A_TO_KM_S = 0.1  # f / |k| with f in THz (1e12 /s) and |k| in 1/A (1e10 /m): 100 m/s


def q_points(fraction: float) -> np.ndarray:
    """The q points (fractional, in the cell's reciprocal basis), one per direction of DIRECTIONS."""
    directions = np.asarray(DIRECTIONS)
    return fraction * directions / np.linalg.norm(directions, axis=1, keepdims=True)


def at_own_equilibrium(atoms: Atoms, settings: PropertySettings) -> Atoms:
    """`atoms` (calculator attached) scaled to the calculator's equation-of-state volume, positions relaxed."""
    edge, _ = equation_of_state(atoms, settings)
    return relaxed(strained(atoms, (edge / atoms.cell.lengths()[0] - 1) * np.eye(3)), settings)


def phonopy_frequencies_thz(atoms: Atoms, calculator: Calculator, supercell: int, displacement_A: float,
                            qpoints: np.ndarray) -> np.ndarray:
    """All frequencies (THz, ascending per q; imaginary negative, phonopy's convention) at `qpoints`
    (fractional, reciprocal basis of `atoms`' cell, which is taken as the primitive cell) from the
    force constants of `calculator` on the `supercell`^3 supercell's phonopy displacements."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit_cell = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.asarray(atoms.cell),
                             scaled_positions=atoms.get_scaled_positions(), masses=atoms.get_masses())
    phonon = Phonopy(unit_cell, supercell_matrix=np.eye(3, dtype=int) * supercell, primitive_matrix="P")
    phonon.generate_displacements(distance=displacement_A)
    phonon.forces = np.array([displaced_forces(cell, calculator) for cell in phonon.supercells_with_displacements])
    phonon.produce_force_constants(show_drift=False)
    phonon.run_qpoints(qpoints)
    return np.sort(phonon.qpoints.frequencies, axis=1)


def displaced_forces(cell, calculator: Calculator) -> np.ndarray:
    """Forces (eV/A) of `calculator` on one of phonopy's displaced supercells."""
    atoms = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, masses=cell.masses, pbc=True)
    atoms.calc = calculator
    return atoms.get_forces()


def measure_acoustic_phonons(calculator: Calculator, cell: Atoms, settings: PropertySettings) -> Measurement:
    """Acoustic frequencies (cm^-1) at the small-q points and the [100] sound velocities (km/s)."""
    atoms = at_own_equilibrium(attached(cell, calculator), settings)
    qpoints = q_points(settings.phonon_q_fraction)
    frequencies = phonopy_frequencies_thz(atoms, calculator, settings.phonon_supercell, settings.displacement_A,
                                          qpoints)[:, :ACOUSTIC_MODES]
    along_100 = frequencies[0] / np.linalg.norm(qpoints[0] @ atoms.cell.reciprocal()) * THZ_A_TO_KM_S
    return {"acoustic_cm1": (frequencies * THZ_TO_CM1).tolist(),
            "sound_velocity_ta_km_s": float(along_100[:2].mean()), "sound_velocity_la_km_s": float(along_100[2])}


def compare_acoustic_phonons(measured: Measurement, reference: Measurement | None) -> dict[str, Outcome]:
    """The sound velocities against the reference's, and the acoustic frequencies' MAE over q and branch."""
    if reference is None:
        return {"acoustic_frequency_mae": skipped("no reference acoustic frequencies"),
                "sound_velocity_ta": Outcome(measured["sound_velocity_ta_km_s"], None, note="no reference"),
                "sound_velocity_la": Outcome(measured["sound_velocity_la_km_s"], None, note="no reference")}
    errors = np.abs(np.asarray(measured["acoustic_cm1"]) - np.asarray(reference["acoustic_cm1"]))
    return {"acoustic_frequency_mae": Outcome(float(errors.mean()), 0.0),
            "sound_velocity_ta": Outcome(measured["sound_velocity_ta_km_s"], reference["sound_velocity_ta_km_s"]),
            "sound_velocity_la": Outcome(measured["sound_velocity_la_km_s"], reference["sound_velocity_la_km_s"])}
