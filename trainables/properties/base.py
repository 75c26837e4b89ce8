"""What every evaluator shares: the settings, the structures, the spec and the row it reports.

A row is flat and long-format, one per (property) of one model:
`{evaluator, property, value, reference, error, unit, status, note, ranked, wall_time_s}`, where
`error = value - reference` (a comparison metric such as a frequency MAE has reference 0: the
reference compared with itself), `status` is one of STATUSES, `note` says why a row is not "ok"
(or what to mind in an "ok" one, such as clamped-ion elastic constants), and `ranked` is False for
a sanity check that any sound model passes (shown, never ranked). `value`, `reference` and
`error` are floats or None.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ase import Atoms
from ase.calculators.calculator import Calculator

from trainables.core.config import reject_unknown_keys
from trainables.errors import ConfigError

OK, SKIPPED, FAILED, UNSTABLE = "ok", "skipped", "failed", "unstable"
STATUSES = (OK, SKIPPED, FAILED, UNSTABLE)
ROW_KEYS = ("evaluator", "property", "value", "reference", "error", "unit", "status", "note", "ranked", "wall_time_s")

# A measurement is what an evaluator computes with one calculator: plain JSON-able values (floats,
# lists of floats, strings), so that a reference measurement can be computed once and cached.
Measurement = dict[str, Any]


class EvaluationFailed(Exception):
    """A model made an evaluation impossible (a relaxation that does not converge, an EOS that
    cannot be fitted): recorded as status "failed" with this message, never raised to the study."""


@dataclass(frozen=True)
class PropertySettings:
    """Settings of the property evaluators (units in the names). Validated once by `from_dict`."""

    evaluators: tuple[str, ...] = ("md", "vibrations", "phonons_gamma", "acoustic_phonons", "elastic",
                                   "energy_profile", "dispersion", "stacking_fault", "liquid")
    md_temperature_K: float = 300.0
    md_steps: int = 2000
    md_timestep_fs: float = 0.5
    md_friction_per_fs: float = 0.01
    md_sample_every: int = 10
    md_seed: int = 0
    md_max_bond_stretch: float = 2.0      # failure: a bonded pair longer than this factor times its start length
    md_min_distance_A: float = 0.5        # failure: any two atoms closer than this
    relax_fmax_eV_A: float = 0.005
    relax_steps: int = 500
    displacement_A: float = 0.01          # finite displacement of Vibrations and Phonons (ASE's and phonopy's)
    phonon_supercell: int = 3             # acoustic phonons: force constants of the cubic cell repeated n x n x n
    phonon_q_fraction: float = 0.1        # acoustic phonons: |q| as a fraction of the cubic cell's reciprocal vector
    eos_max_strain: float = 0.02          # lattice scaled over [1 - s, 1 + s]
    eos_points: int = 7
    elastic_strain: float = 0.005
    elastic_max_residual_force_eV_A: float = 0.001  # above it, clamped-ion constants get a note (see elastic.py)
    dispersion_q_points: int = 60         # along the cell's high-symmetry path (dispersion.py)
    gsfe_plane: tuple[int, int, int] = (1, 1, 1)             # Miller indices of the slip plane (cubic cell)
    gsfe_shift: tuple[float, float, float] = (1 / 6, 1 / 6, -1 / 3)  # the path's end, in cubic-cell edges
    gsfe_layers: int = 8                  # atomic planes of the slab, half of them shifted
    gsfe_vacuum_A: float = 10.0
    gsfe_points: int = 7                  # shifts along the path, both ends included (s = 1/2 among them)
    liquid_temperature_K: float = 1200.0  # Nose-Hoover MD of the liquid evaluator (liquid.py)
    liquid_steps: int = 300               # 0.6 ps at 2 fs: about 9 CPU-s for 32 atoms (embedded foundation)
    liquid_timestep_fs: float = 2.0
    liquid_tdamp_fs: float = 100.0        # the thermostat's time constant
    liquid_equilibration_fraction: float = 0.2  # of the frames, left out of every average
    msd_fit_start: float = 0.1            # the Einstein fit's window, as fractions of the longest lag
    msd_fit_end: float = 0.5
    rdf_max_A: float = 6.0
    rdf_bins: int = 60
    spectrum_configurations: int = 8      # the fixed training sample of the curvature (spectrum.py), evenly spaced
    spectrum_lanczos_steps: int = 15      # per SLQ probe; also eigsh's Lanczos basis
    spectrum_probes: int = 2              # Rademacher probes of SLQ and Hutchinson's trace
    spectrum_top_eigenvalues: int = 1     # asked of eigsh (the largest is reported)
    spectrum_quantile: float = 0.1        # lambda_low: this quantile of the SLQ mass above the floor
    spectrum_relative_floor: float = 1e-3  # "positive": above this fraction of lambda_max (below: the unresolved bulk)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PropertySettings:
        """Settings from plain values; unknown setting names and non-positive numbers raise ConfigError
        (`registry.settings_from_dict` also checks the evaluator names)."""
        reject_unknown_keys(cls, values, "property setting(s)")
        values = dict(values)
        for name in ("evaluators", *VECTOR_SETTINGS):
            if name in values:
                values[name] = tuple(values[name])
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """The values and their relations; the evaluator names are checked against the registry by
        `trainables.properties.registry.settings_from_dict`."""
        for field in dataclasses.fields(self):
            value, wants_int = getattr(self, field.name), isinstance(field.default, int)
            if field.name == "evaluators":
                continue
            if field.name in VECTOR_SETTINGS:
                _check_vector(field.name, value, wants_int=VECTOR_SETTINGS[field.name] is int)
                continue
            if isinstance(value, bool) or not isinstance(value, int if wants_int else (int, float)):
                raise ConfigError(f"property setting {field.name} must be {'an integer' if wants_int else 'a number'}, "
                                  f"got {value!r}")
            if field.name != "md_seed" and not value > 0:
                raise ConfigError(f"property setting {field.name} must be positive, got {value!r}")
        self._check_relations()

    def _check_relations(self) -> None:
        if not self.liquid_equilibration_fraction < 1:
            raise ConfigError("liquid_equilibration_fraction must be below 1, got "
                              f"{self.liquid_equilibration_fraction}")
        if not self.msd_fit_start < self.msd_fit_end <= 1:
            raise ConfigError(f"the MSD fit window needs 0 < msd_fit_start < msd_fit_end <= 1, got "
                              f"{self.msd_fit_start}, {self.msd_fit_end}")
        if self.liquid_steps // self.md_sample_every < MIN_LIQUID_FRAMES:
            raise ConfigError(f"the liquid MD samples {self.liquid_steps // self.md_sample_every} frames "
                              f"(liquid_steps // md_sample_every); it needs {MIN_LIQUID_FRAMES} or more")
        if not self.spectrum_quantile < 1:
            raise ConfigError(f"spectrum_quantile must be below 1, got {self.spectrum_quantile}")
        if self.gsfe_points < 2:
            raise ConfigError(f"gsfe_points must be 2 or more (both ends of the path), got {self.gsfe_points}")
        if abs(sum(s * h for s, h in zip(self.gsfe_shift, self.gsfe_plane))) > 1e-9:
            raise ConfigError(f"gsfe_shift {self.gsfe_shift} is not in gsfe_plane {self.gsfe_plane}: their dot product "
                              "must be 0 (both in the cubic cell's axes)")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists, as JSON reads them back)."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}


MIN_LIQUID_FRAMES = 10  # the Einstein fit and the temperature's line need a few frames after equilibration
# Settings that are 3-vectors (Miller indices, a shift) and the type of their components.
VECTOR_SETTINGS = {"gsfe_plane": int, "gsfe_shift": float}


def _check_vector(name: str, value: Any, *, wants_int: bool) -> None:
    kinds = int if wants_int else (int, float)
    if (not isinstance(value, tuple) or len(value) != 3
            or not all(isinstance(x, kinds) and not isinstance(x, bool) for x in value) or not any(value)):
        raise ConfigError(f"property setting {name} must be three {'integers' if wants_int else 'numbers'}, "
                          f"not all zero, got {value!r}")


@dataclass(frozen=True)
class PropertyStructures:
    """The structures evaluated, all at the reference's geometry (atoms in the same order as any
    reference trajectory). Absent ones skip the evaluators that need them.

    - `minimum`: the reference minimum: the MD start and the geometry of vibrations (a molecule) or
      of phonons at Gamma (a periodic cell, which may be a supercell);
    - `cubic_cell`: a conventional cubic cell (e.g. `ase.build.bulk("Cu", cubic=True)`) for the
      equation of state and elastic constants; its edge is the reported lattice constant;
    - `profile`: a scan or reaction path, in order.
    """

    minimum: Atoms | None = None
    cubic_cell: Atoms | None = None
    profile: tuple[Atoms, ...] = ()


# An evaluator's rows before the driver adds the evaluator, unit and time: property -> Outcome.
@dataclass(frozen=True)
class Outcome:
    value: float | None
    reference: float | None = None
    status: str = OK
    note: str = ""


def skipped(note: str) -> Outcome:
    return Outcome(None, None, SKIPPED, note)


@dataclass(frozen=True)
class EvaluatorSpec:
    """A named evaluator: `measure(calculator, structure, settings) -> Measurement` on the
    `structure` field of PropertyStructures it names, and `compare(measured, reference) ->
    {property: Outcome}` against a reference measurement (None when absent).

    `units` lists its properties in row order. Capability flags: `needs_periodic` (a cell periodic
    on all axes), `needs_molecule` (no periodic axis), `needs_cubic`, `needs_reference` (only
    comparisons: without a reference it is not run and every property is "skipped"),
    `reference_from_calculator` (False: the reference comes from data, a trajectory or stored
    energies, and `compute_references` leaves it out), `needs_structure` (False: it measures the run
    behind the calculator, not a structure, and is never skipped for want of one). `unranked` names
    the properties that are sanity checks (rows with `ranked` False: analysis shows them and leaves
    them out of rankings)."""

    name: str
    description: str
    structure: str
    units: dict[str, str]
    measure: Callable[[Calculator, Any, PropertySettings], Measurement]
    compare: Callable[[Measurement, Measurement | None], dict[str, Outcome]]
    needs_periodic: bool = False
    needs_molecule: bool = False
    needs_cubic: bool = False
    needs_reference: bool = False
    reference_from_calculator: bool = True
    needs_structure: bool = True
    unranked: tuple[str, ...] = ()

    def skip_reason(self, structures: PropertyStructures) -> str | None:
        """Why this evaluator cannot run on `structures` (a user's input, not the model), or None."""
        if not self.needs_structure:
            return None
        structure = getattr(structures, self.structure)
        if structure is None or (isinstance(structure, Sequence) and len(structure) < 2):
            return f"no {self.structure} structure{'s (2 or more)' if self.structure == 'profile' else ''} given"
        if self.needs_periodic and not structure.pbc.all():
            return f"needs a cell periodic on all axes; the {self.structure} is not"
        if self.needs_molecule and structure.pbc.any():
            return f"needs a molecule (no periodic axis); the {self.structure} is periodic"
        if self.needs_cubic and not is_cubic(structure):
            return f"needs a cubic cell; the {self.structure}'s is {format_cellpar(structure)}"
        return None

    def rows(self, outcomes: Mapping[str, Outcome], wall_time_s: float) -> list[dict[str, Any]]:
        """One row per property in `units` order (a property missing from `outcomes` is a bug)."""
        return [row(self.name, prop, unit, outcomes[prop], wall_time_s, ranked=prop not in self.unranked)
                for prop, unit in self.units.items()]

    def all_rows(self, outcome: Outcome, wall_time_s: float = 0.0) -> list[dict[str, Any]]:
        """The same outcome on every property (skipped or failed as a whole)."""
        return self.rows({prop: outcome for prop in self.units}, wall_time_s)


def row(evaluator: str, prop: str, unit: str, outcome: Outcome, wall_time_s: float, *,
        ranked: bool = True) -> dict[str, Any]:
    value, reference = _finite_or_none(outcome.value), _finite_or_none(outcome.reference)
    error = value - reference if value is not None and reference is not None else None
    return {"evaluator": evaluator, "property": prop, "value": value, "reference": reference, "error": error,
            "unit": unit, "status": outcome.status, "note": outcome.note, "ranked": ranked,
            "wall_time_s": wall_time_s}


def _finite_or_none(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def is_cubic(atoms: Atoms, tolerance: float = 1e-6) -> bool:
    lengths, angles = atoms.cell.lengths(), atoms.cell.angles()
    return bool(abs(lengths.max() - lengths.min()) <= tolerance * lengths.max() and abs(angles - 90.0).max() <= 1e-4)


def format_cellpar(atoms: Atoms) -> str:
    a, b, c, alpha, beta, gamma = atoms.cell.cellpar()
    return f"a,b,c = {a:.3f},{b:.3f},{c:.3f} A, angles {alpha:.1f},{beta:.1f},{gamma:.1f} deg"


def attached(atoms: Atoms, calculator: Calculator) -> Atoms:
    """A copy of `atoms` (constraints dropped) with `calculator` attached: evaluators never move the caller's atoms."""
    copy = atoms.copy()
    copy.set_constraint()
    copy.calc = calculator
    return copy
