"""Liquid structure and transport from NVT MD with a Nose-Hoover chain thermostat (the paper's
Fig. 5 and its thermostat; `ase.md.nose_hoover_chain.NoseHooverChainNVT`, Martyna, Klein &
Tuckerman, J. Chem. Phys. 97, 2635 (1992)).

From the periodic minimum, velocities drawn at `liquid_temperature_K` (seeded by `md_seed`, no
centre-of-mass motion), `liquid_steps` steps of `liquid_timestep_fs` with a chain of three
thermostats of time constant `liquid_tdamp_fs`, a frame every `md_sample_every` steps. The first
`liquid_equilibration_fraction` of the frames are left out; from the others:

- partial radial distribution functions g_ab(r) for every pair of elements, up to `rdf_max_A` in
  `rdf_bins` bins, averaged over frames; `liquid_rdf_rmse`: their RMSE against the reference's
  over every pair and bin (dimensionless);
- `self_diffusion`: D of all atoms by the Einstein relation, MSD(tau) = 6 D tau + c fitted over the
  lags tau in [`msd_fit_start`, `msd_fit_end`] times the production run's length (the fit window;
  MSD over every time origin, positions unwrapped frame to frame, the centre of mass's drift
  removed), in A^2/ps (1 A^2/ps = 1e-8 m^2/s), against the reference's;
- `bond_angle_w1`: the 1-Wasserstein distance (degrees) between the model's and the reference's
  distributions of angles j-i-k between the bonded neighbours j, k of each atom i (bonded: within
  `md.BOND_CUTOFF_FACTOR` times the covalent radii, as the MD check; a crystal's first shell);
- `temperature_drift` (K/ps): the slope of a straight line fitted to the kinetic temperature over
  time, and `temperature_fluctuation` (K): the standard deviation about that line, reported apart
  so that a thermostat that heats or cools is not mistaken for a broad distribution; both against
  the reference's.

The reference is the labeller's own run under the same protocol (`compute_references`) or, for a
user's data, a reference trajectory (`reference_from_trajectory`: its structure only; diffusion
and temperature need the frames' times and velocities). A run whose energy or positions stop being
finite or whose atoms come closer than `md_min_distance_A` is "unstable" and reports no value.
"""

from __future__ import annotations

import itertools

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.geometry import find_mic
from ase.md.nose_hoover_chain import NoseHooverChainNVT
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.neighborlist import natural_cutoffs, neighbor_list
from scipy.stats import wasserstein_distance

from trainables.errors import ConfigError
from trainables.properties.base import UNSTABLE, Measurement, Outcome, PropertySettings, attached, skipped
from trainables.properties.md import BOND_CUTOFF_FACTOR

UNITS = {"liquid_rdf_rmse": "1", "self_diffusion": "A^2/ps", "bond_angle_w1": "deg",
         "temperature_drift": "K/ps", "temperature_fluctuation": "K"}
ANGLE_BINS = np.linspace(0.0, 180.0, 181)
# The properties measured as one number on each side, and their keys in a measurement.
SCALARS = {"self_diffusion": "self_diffusion_A2_ps", "temperature_drift": "temperature_drift_K_ps",
           "temperature_fluctuation": "temperature_fluctuation_K"}
THERMOSTAT = "Nose-Hoover chain NVT (ase.md.nose_hoover_chain.NoseHooverChainNVT, 3 thermostats)"


def partial_rdfs(frames: list[Atoms], r_max: float, bins: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(bin centres in A, {"a-b": g_ab(r)} for every pair of elements a <= b), averaged over `frames`
    (periodic, same atoms): g_ab(r) = V / (N_a N_b) * n_ab(r) / (4 pi r^2 dr), n_ab(r) the number of
    (i of a, j of b, j != i) pairs at distance r, so that 4 pi (N_b / V) int g_ab r^2 dr counts the
    b neighbours of an a atom."""
    edges = np.linspace(0.0, r_max, bins + 1)
    shells = 4.0 / 3.0 * np.pi * np.diff(edges ** 3)
    symbols = np.array(frames[0].get_chemical_symbols())
    elements = sorted(set(symbols))
    counts = {f"{a}-{b}": np.zeros(bins) for a, b in itertools.combinations_with_replacement(elements, 2)}
    for frame in frames:
        i, j, d = neighbor_list("ijd", frame, r_max)
        for key in counts:
            a, b = key.split("-")
            pairs = (symbols[i] == a) & (symbols[j] == b)
            counts[key] += np.histogram(d[pairs], edges)[0]
    volume = frames[0].get_volume()
    number = {element: int((symbols == element).sum()) for element in elements}
    return (edges[:-1] + edges[1:]) / 2, {
        key: counts[key] * volume / (len(frames) * number[key.split("-")[0]] * number[key.split("-")[1]] * shells)
        for key in counts}


def bond_angle_histogram(frames: list[Atoms]) -> np.ndarray:
    """Counts of the angles j-i-k (degrees, in ANGLE_BINS) between the bonded neighbours j < k of
    every atom i, over `frames`."""
    counts = np.zeros(len(ANGLE_BINS) - 1)
    for frame in frames:
        i, vectors = neighbor_list("iD", frame, natural_cutoffs(frame, mult=BOND_CUTOFF_FACTOR))
        for centre in np.unique(i):
            bonds = vectors[i == centre]
            unit = bonds / np.linalg.norm(bonds, axis=1, keepdims=True)
            cosines = (unit @ unit.T)[np.triu_indices(len(bonds), k=1)]
            counts += np.histogram(np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))), ANGLE_BINS)[0]
    return counts


def unwrapped_positions(frames: list[Atoms]) -> np.ndarray:
    """Positions (frames x atoms x 3, A) made continuous: each frame's displacement from the one
    before taken through the minimum image, so wrapped coordinates do not jump by a cell edge."""
    steps = [find_mic(b.positions - a.positions, a.cell, a.pbc)[0] for a, b in zip(frames, frames[1:])]
    return frames[0].positions + np.concatenate([np.zeros((1, *frames[0].positions.shape)),
                                                 np.cumsum(steps, axis=0)])


def mean_squared_displacement(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """MSD(k) (A^2) at lag k = 0 .. frames-1, over every time origin and atom, the centre of mass's
    drift removed."""
    centre = (positions * masses[None, :, None]).sum(axis=1, keepdims=True) / masses.sum()
    relative = positions - centre
    frames = len(relative)
    return np.array([0.0] + [np.mean(np.sum((relative[k:] - relative[:-k]) ** 2, axis=2))
                             for k in range(1, frames)])


def einstein_diffusion(msd: np.ndarray, interval_ps: float, window: tuple[float, float]) -> float:
    """D (A^2/ps) from MSD = 6 D tau + c fitted over the lags `window` (fractions of the longest lag)."""
    lags = np.arange(len(msd)) * interval_ps
    chosen = (lags >= window[0] * lags[-1]) & (lags <= window[1] * lags[-1])
    if chosen.sum() < 2:
        raise ConfigError(f"the MSD fit window {window} holds fewer than two of the {len(msd)} lags: widen "
                          "msd_fit_start..msd_fit_end or sample more frames (liquid_steps, md_sample_every)")
    slope, _ = np.polyfit(lags[chosen], msd[chosen], 1)
    return float(slope / 6.0)


def self_diffusion(frames: list[Atoms], interval_ps: float, window: tuple[float, float]) -> float:
    """The self-diffusion coefficient (A^2/ps) of all atoms of `frames` (`interval_ps` apart) by the
    Einstein relation over the fit `window`."""
    return einstein_diffusion(mean_squared_displacement(unwrapped_positions(frames), frames[0].get_masses()),
                              interval_ps, window)


def temperature_drift_and_fluctuation(temperatures: np.ndarray, interval_ps: float) -> tuple[float, float]:
    """(slope of a straight line through T(t) in K/ps, standard deviation of T about it in K)."""
    times = np.arange(len(temperatures)) * interval_ps
    slope, intercept = np.polyfit(times, temperatures, 1)
    return float(slope), float(np.std(temperatures - (slope * times + intercept)))


def nose_hoover(atoms: Atoms, settings: PropertySettings) -> NoseHooverChainNVT:
    """Seeded Nose-Hoover chain NVT on `atoms` (moved in place), velocities drawn at the set temperature."""
    thermalize_momenta(atoms, settings.liquid_temperature_K, rng=np.random.default_rng(settings.md_seed))
    Stationary(atoms)
    return NoseHooverChainNVT(atoms, timestep=settings.liquid_timestep_fs * units.fs,
                              temperature_K=settings.liquid_temperature_K, tdamp=settings.liquid_tdamp_fs * units.fs)


def broken(atoms: Atoms, settings: PropertySettings) -> str | None:
    """Why the MD frame `atoms` is physically broken (non-finite, two atoms too close), or None."""
    if not np.isfinite(atoms.positions).all() or not np.isfinite(atoms.get_potential_energy()):
        return "non-finite energy or positions"
    close = neighbor_list("d", atoms, settings.md_min_distance_A)
    return f"two atoms {close.min():.2f} A apart (minimum {settings.md_min_distance_A} A)" if close.size else None


def run_frames(calculator: Calculator, start: Atoms, settings: PropertySettings) -> tuple[list[Atoms], str | None]:
    """(the MD's frames every `md_sample_every` steps with their temperatures in `info`, why it broke or None)."""
    atoms = attached(start, calculator)
    dynamics = nose_hoover(atoms, settings)
    frames = []
    for _ in dynamics.irun(settings.liquid_steps):
        if dynamics.nsteps % settings.md_sample_every:
            continue
        reason = broken(atoms, settings)
        if reason is not None:
            return frames, f"{reason} at step {dynamics.nsteps}"
        frame = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc, masses=atoms.get_masses())
        frame.info["temperature_K"] = float(atoms.get_temperature())
        frames.append(frame)
    return frames, None


def structure_of(frames: list[Atoms], settings: PropertySettings) -> Measurement:
    """The partial g(r) and the bond-angle histogram of `frames`."""
    _, rdfs = partial_rdfs(frames, settings.rdf_max_A, settings.rdf_bins)
    return {"rdfs": {key: g.tolist() for key, g in rdfs.items()},
            "bond_angle_counts": bond_angle_histogram(frames).tolist()}


def measure_liquid(calculator: Calculator, start: Atoms, settings: PropertySettings) -> Measurement:
    """Run the Nose-Hoover MD; the production frames' structure, diffusion and temperature."""
    frames, failure = run_frames(calculator, start, settings)
    if failure is not None:
        return {"failure": failure}
    production = frames[int(settings.liquid_equilibration_fraction * len(frames)):]
    interval_ps = settings.md_sample_every * settings.liquid_timestep_fs / 1000.0
    window = (settings.msd_fit_start, settings.msd_fit_end)
    drift, fluctuation = temperature_drift_and_fluctuation(
        np.array([frame.info["temperature_K"] for frame in production]), interval_ps)
    return {"failure": None, **structure_of(production, settings),
            "self_diffusion_A2_ps": self_diffusion(production, interval_ps, window),
            "temperature_drift_K_ps": drift, "temperature_fluctuation_K": fluctuation,
            "protocol": f"{THERMOSTAT} at {settings.liquid_temperature_K:g} K, "
                        f"{len(production)} frames {interval_ps:g} ps apart, MSD fit over lags {window[0]:g}-"
                        f"{window[1]:g} of {interval_ps * (len(production) - 1):g} ps"}


def reference_from_trajectory(frames: list[Atoms], settings: PropertySettings) -> Measurement:
    """A reference from a reference trajectory (periodic, the minimum's atoms): its partial g(r) and
    bond angles over the frames after `liquid_equilibration_fraction`; no diffusion or temperature."""
    production = frames[int(settings.liquid_equilibration_fraction * len(frames)):]
    return {"failure": None, **structure_of(production, settings)}


def compare_liquid(measured: Measurement, reference: Measurement | None) -> dict[str, Outcome]:
    """Each quantity against the reference's; an unstable run reports none."""
    if measured["failure"] is not None:
        return {prop: Outcome(None, None, UNSTABLE, f"{measured['failure']}: no value from a run that failed")
                for prop in UNITS}
    if reference is not None and reference["failure"] is not None:
        reference, missing = None, f"the reference MD failed ({reference['failure']})"
    else:
        missing = "no reference MD or trajectory"
    note = measured["protocol"]
    if reference is None:
        return {"liquid_rdf_rmse": skipped(missing), "bond_angle_w1": skipped(missing),
                **{prop: Outcome(measured[key], None, note=f"{missing}; {note}") for prop, key in SCALARS.items()}}
    return {"liquid_rdf_rmse": Outcome(rdf_rmse(measured["rdfs"], reference["rdfs"]), 0.0, note=note),
            "bond_angle_w1": _angle_outcome(measured, reference, note),
            **{prop: Outcome(measured[key], reference.get(key), note=note if key in reference
                             else f"the reference trajectory has no {prop.replace('_', ' ')}; {note}")
               for prop, key in SCALARS.items()}}


def rdf_rmse(measured: dict[str, list[float]], reference: dict[str, list[float]]) -> float:
    """RMSE over every element pair and bin of two sets of partial g(r) on the same bins."""
    return float(np.sqrt(np.mean([(np.asarray(measured[key]) - np.asarray(reference[key])) ** 2
                                  for key in reference])))


def _angle_outcome(measured: Measurement, reference: Measurement, note: str) -> Outcome:
    distance = angle_distance(measured["bond_angle_counts"], reference["bond_angle_counts"])
    if distance is None:
        return skipped(f"no bonded neighbours within {BOND_CUTOFF_FACTOR} times the covalent radii on one side")
    return Outcome(distance, 0.0, note=note)


def angle_distance(measured: list[float], reference: list[float]) -> float | None:
    """The 1-Wasserstein distance (degrees) between two bond-angle histograms on ANGLE_BINS; None if one is empty."""
    if not sum(measured) or not sum(reference):
        return None
    centres = (ANGLE_BINS[:-1] + ANGLE_BINS[1:]) / 2
    return float(wasserstein_distance(centres, centres, measured, reference))
