"""MD stability: NVT Langevin MD (`ase.md.langevin.Langevin`) from the reference minimum.

The run fails at the first step where the energy or a position is not finite, two atoms come closer
than `md_min_distance_A`, or a bonded pair (bonded in the start structure by ASE's covalent
`natural_cutoffs` times BOND_CUTOFF_FACTOR; in a crystal, first-shell neighbours) stretches past
`md_max_bond_stretch` times its start length. Reported: the time it survived (reference: the run's
length), the mean kinetic temperature over the second half of the frames sampled, and the
1-Wasserstein distance between the model's and the reference's distributions of bonded-pair
lengths (`scipy.stats.wasserstein_distance`; in a crystal, the first peak of the radial distribution).

The reference is the reference calculator (the labeller) run through the same MD: the same start,
velocities, thermostat, steps and seed (`compute_references`), so that what the thermostat has not
yet reached in a short run (0.1 ps at a friction of 0.01/fs: about 210 K of a 300 K target) is
the same on both sides and the temperature's error is the model's. Without a labeller (a user's
data) the bond lengths of a reference trajectory serve (`reference_from_trajectory`) and the
temperature has no reference: the thermostat's target is not one.

An unstable run's rows carry status "unstable": its survival time is its value; its temperature
and bond lengths, from frames before the failure, are not reported (value None).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
from ase.neighborlist import natural_cutoffs, neighbor_list
from scipy.stats import wasserstein_distance

from trainables.properties.base import OK, UNSTABLE, Measurement, Outcome, PropertySettings, attached, skipped

BOND_CUTOFF_FACTOR = 1.2  # on covalent radii: bonds of molecules, the first shell of fcc metals
UNITS = {"md_survival_time": "ps", "md_temperature": "K", "md_bond_length_w1": "A"}


def bonded_pairs(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) pairs with i < j bonded in `atoms` by ASE's covalent radii, as index arrays."""
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=BOND_CUTOFF_FACTOR))
    keep = i < j
    return i[keep], j[keep]


def pair_lengths(atoms: Atoms, pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Lengths of `pairs` in A, through the minimum image where the cell is periodic."""
    vectors = atoms.positions[pairs[1]] - atoms.positions[pairs[0]]
    if atoms.pbc.any():
        from ase.geometry import find_mic

        vectors, _ = find_mic(vectors, atoms.cell, atoms.pbc)
    return np.linalg.norm(vectors, axis=1)


def failure(atoms: Atoms, pairs: tuple[np.ndarray, np.ndarray], start_lengths: np.ndarray,
            settings: PropertySettings) -> str | None:
    """Why the structure `atoms` (calculator attached) is physically broken, or None."""
    if not np.isfinite(atoms.positions).all() or not np.isfinite(atoms.get_potential_energy()):
        return "non-finite energy or positions"
    stretch = pair_lengths(atoms, pairs) / start_lengths
    if stretch.size and stretch.max() > settings.md_max_bond_stretch:
        k = int(stretch.argmax())
        return f"bond {pairs[0][k]}-{pairs[1][k]} stretched to {stretch[k]:.2f}x its start length"
    close = neighbor_list("d", atoms, settings.md_min_distance_A)
    if close.size:
        return f"two atoms {close.min():.2f} A apart (minimum {settings.md_min_distance_A} A)"
    return None


def langevin(atoms: Atoms, settings: PropertySettings) -> Langevin:
    """Seeded Langevin NVT on `atoms` (moved in place), velocities drawn at the set temperature,
    no centre-of-mass motion (and no rotation for a molecule), centre of mass held by FixCom."""
    rng = np.random.default_rng(settings.md_seed)
    thermalize_momenta(atoms, settings.md_temperature_K, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        with np.errstate(invalid="ignore"):  # linear molecules: ASE computes 0/0, then discards it
            ZeroRotation(atoms)
    atoms.set_constraint(FixCom())
    return Langevin(atoms, timestep=settings.md_timestep_fs * units.fs, temperature_K=settings.md_temperature_K,
                    friction=settings.md_friction_per_fs / units.fs, fixcm=False, rng=rng)


def measure_md(calculator: Calculator, start: Atoms, settings: PropertySettings) -> Measurement:
    """Run the MD, checking every step; sample temperature and bonded-pair lengths every
    `md_sample_every` steps until the end or the first failure."""
    atoms = attached(start, calculator)
    pairs = bonded_pairs(start)
    start_lengths = pair_lengths(start, pairs)
    dynamics = langevin(atoms, settings)
    temperatures, lengths, reason, steps_done = [], [], None, 0
    for _ in dynamics.irun(settings.md_steps):
        steps_done = dynamics.nsteps
        reason = failure(atoms, pairs, start_lengths, settings)
        if reason is not None:
            break
        if steps_done % settings.md_sample_every == 0 and steps_done > 0:
            temperatures.append(float(atoms.get_temperature()))
            lengths.extend(pair_lengths(atoms, pairs).tolist())
    to_ps = settings.md_timestep_fs / 1000.0
    return {"survival_time_ps": (steps_done if reason is None else max(steps_done - 1, 0)) * to_ps,
            "duration_ps": settings.md_steps * to_ps, "failure": reason,
            "failure_step": steps_done if reason else None,
            "temperatures_K": temperatures,
            "bond_lengths_A": lengths}


def reference_from_trajectory(frames: list[Atoms], start: Atoms) -> Measurement:
    """A reference MD measurement from a reference trajectory (atoms in `start`'s order): the
    lengths of `start`'s bonded pairs over the frames. Only the bond-length comparison uses it."""
    pairs = bonded_pairs(start)
    return {"bond_lengths_A": np.concatenate([pair_lengths(frame, pairs) for frame in frames]).tolist()}


def compare_md(measured: Measurement, reference: Measurement | None) -> dict[str, Outcome]:
    """Survival against the run's length; temperature and bond lengths against the reference MD's,
    for a stable run only."""
    survival = Outcome(measured["survival_time_ps"], measured["duration_ps"])
    if measured["failure"] is not None:
        note = f"{measured['failure']} at step {measured['failure_step']}"
        not_reported = Outcome(None, None, UNSTABLE, f"{note}: no value from a run that failed")
        return {"md_survival_time": dataclasses.replace(survival, status=UNSTABLE, note=note),
                "md_temperature": not_reported, "md_bond_length_w1": not_reported}
    reference_note = _unusable_reference(reference)
    return {"md_survival_time": survival,
            "md_temperature": _temperature(measured, None if reference_note else reference, reference_note),
            "md_bond_length_w1": _bond_length_distance(measured, None if reference_note else reference,
                                                       reference_note)}


def _unusable_reference(reference: Measurement | None) -> str:
    """Why the reference MD cannot be compared with (it failed itself), or ""."""
    if reference is not None and reference.get("failure"):
        return f"the reference MD failed ({reference['failure']} at step {reference['failure_step']})"
    return ""


def second_half_mean_temperature(measurement: Measurement) -> float | None:
    """The mean kinetic temperature (K) over the second half of the sampled frames, None if none."""
    temperatures = measurement["temperatures_K"]
    second_half = temperatures[len(temperatures) // 2:]
    return float(np.mean(second_half)) if second_half else None


def _temperature(measured: Measurement, reference: Measurement | None, reference_note: str) -> Outcome:
    value = second_half_mean_temperature(measured)
    if value is None:
        return Outcome(None, None, OK, "no frame sampled")
    if reference is None or "temperatures_K" not in reference:
        return Outcome(value, None, OK, reference_note or "no reference MD under the same protocol (the "
                                                          "thermostat's target is not a reference)")
    return Outcome(value, second_half_mean_temperature(reference))


def _bond_length_distance(measured: Measurement, reference: Measurement | None, reference_note: str) -> Outcome:
    if reference is None or not reference.get("bond_lengths_A"):
        return skipped(reference_note or "no reference MD or trajectory (bonded-pair lengths)")
    if not measured["bond_lengths_A"]:
        return Outcome(None, 0.0, OK, "no frame sampled")
    return Outcome(wasserstein_distance(measured["bond_lengths_A"], reference["bond_lengths_A"]), 0.0)
