"""Energy profiles (a torsion scan, a reaction path): single points of the model on the reference
geometries, compared as the scores do (`trainables.core.loss`): energies relative to the structure with
the lowest reference energy, in meV; the barrier is the highest relative energy."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from trainables.properties.base import FAILED, Measurement, Outcome, PropertySettings, attached, skipped

UNITS = {"profile_rel_energy_rmse": "meV", "profile_rel_energy_max_error": "meV", "profile_barrier": "meV"}


def measure_profile(calculator: Calculator, frames: Sequence[Atoms], settings: PropertySettings) -> Measurement:
    """The calculator's energy of every frame (eV), in order."""
    return {"energies_eV": [float(attached(frame, calculator).get_potential_energy()) for frame in frames]}


def reference_from_labels(frames: Sequence[Atoms]) -> Measurement:
    """A reference profile from the energies stored with the frames (e.g. an extxyz read by ASE)."""
    return {"energies_eV": [float(frame.get_potential_energy()) for frame in frames]}


def compare_profile(measured: Measurement, reference: Measurement | None) -> dict[str, Outcome]:
    predicted, expected = np.asarray(measured["energies_eV"]), np.asarray(reference["energies_eV"])
    if predicted.shape != expected.shape:
        return {prop: skipped(f"{predicted.size} frames against {expected.size} reference energies") for prop in UNITS}
    lowest = int(np.argmin(expected))
    predicted_rel, expected_rel = 1000.0 * (predicted - predicted[lowest]), 1000.0 * (expected - expected[lowest])
    if not np.isfinite(predicted_rel).all():
        return {prop: Outcome(None, None, FAILED, "non-finite energy") for prop in UNITS}
    error = predicted_rel - expected_rel
    return {"profile_rel_energy_rmse": Outcome(float(np.sqrt(np.mean(error ** 2))), 0.0),
            "profile_rel_energy_max_error": Outcome(float(np.abs(error).max()), 0.0),
            "profile_barrier": Outcome(float(predicted_rel.max()), float(expected_rel.max()))}
