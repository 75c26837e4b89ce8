"""The registry of property evaluators and the entry points that run them.

`evaluate_properties(calculator, structures, references, settings)` runs every evaluator named in
`settings.evaluators` and returns their rows (see `trainables.properties.base` for the row). It never
raises for a physically bad model: an MD that explodes is status "unstable", a relaxation or fit the
model breaks is "failed", and an evaluator the inputs do not allow (a cell on a molecule, no
reference where only comparisons are made) is "skipped", each with a one-line note. Code branches on
the specs' flags, never on names; adding an evaluator is one `register` call.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np
from ase.calculators.calculator import Calculator, CalculationFailed

from trainables.errors import ConfigError
from trainables.properties import (
    dispersion, elastic, liquid, md, phonons, profile, spectrum, stacking_fault, vibrations,
)
from trainables.properties.base import (
    FAILED, EvaluationFailed, EvaluatorSpec, Measurement, Outcome, PropertySettings, PropertyStructures, skipped,
)

EVALUATORS: dict[str, EvaluatorSpec] = {}

# What a model can break inside ASE's tools: a calculator giving up, a singular Hessian or fit, a fit
# that finds no optimum (scipy's curve_fit raises RuntimeError). Anything else is a bug and raises.
MODEL_FAILURES = (EvaluationFailed, CalculationFailed, np.linalg.LinAlgError, RuntimeError, FloatingPointError)


def register(spec: EvaluatorSpec) -> EvaluatorSpec:
    EVALUATORS[spec.name] = spec
    return spec


def get_evaluator(name: str) -> EvaluatorSpec:
    """Look up a registered evaluator; an unknown name raises with the list of known ones."""
    try:
        return EVALUATORS[name]
    except KeyError:
        raise ConfigError(f"unknown property evaluator {name!r}; known: {', '.join(EVALUATORS)}") from None


def settings_from_dict(values: Mapping[str, Any]) -> PropertySettings:
    """`PropertySettings.from_dict`, every evaluator it names a registered one (else ConfigError)."""
    settings = PropertySettings.from_dict(values)
    for name in settings.evaluators:
        get_evaluator(name)
    return settings


register(EvaluatorSpec(
    name="md", description=md.__doc__, structure="minimum", units=md.UNITS,
    measure=md.measure_md, compare=md.compare_md,
))
register(EvaluatorSpec(
    name="vibrations", description=vibrations.__doc__, structure="minimum", units=vibrations.VIBRATION_UNITS,
    measure=vibrations.measure_vibrations, compare=vibrations.compare_vibrations,
    needs_molecule=True, needs_reference=True,
))
register(EvaluatorSpec(
    name="phonons_gamma", description=vibrations.__doc__, structure="minimum", units=vibrations.PHONON_UNITS,
    measure=vibrations.measure_phonons_gamma, compare=vibrations.compare_phonons_gamma,
    needs_periodic=True, unranked=("phonon_acoustic_sum_rule",),
))
register(EvaluatorSpec(
    name="acoustic_phonons", description=phonons.__doc__, structure="cubic_cell", units=phonons.UNITS,
    measure=phonons.measure_acoustic_phonons, compare=phonons.compare_acoustic_phonons,
    needs_periodic=True,
))
register(EvaluatorSpec(
    name="elastic", description=elastic.__doc__, structure="cubic_cell", units=elastic.UNITS,
    measure=elastic.measure_elastic, compare=elastic.compare_elastic,
    needs_periodic=True, needs_cubic=True,
))
register(EvaluatorSpec(
    name="dispersion", description=dispersion.__doc__, structure="cubic_cell", units=dispersion.UNITS,
    measure=dispersion.measure_dispersion, compare=dispersion.compare_dispersion,
    needs_periodic=True,
))
register(EvaluatorSpec(
    name="stacking_fault", description=stacking_fault.__doc__, structure="cubic_cell", units=stacking_fault.UNITS,
    measure=stacking_fault.measure_stacking_fault, compare=stacking_fault.compare_stacking_fault,
    needs_periodic=True, needs_cubic=True,
))
register(EvaluatorSpec(
    name="liquid", description=liquid.__doc__, structure="minimum", units=liquid.UNITS,
    measure=liquid.measure_liquid, compare=liquid.compare_liquid,
    needs_periodic=True,
))
register(EvaluatorSpec(
    name="energy_profile", description=profile.__doc__, structure="profile", units=profile.UNITS,
    measure=profile.measure_profile, compare=profile.compare_profile,
    needs_reference=True, reference_from_calculator=False,
))

register(EvaluatorSpec(
    name="spectrum", description=spectrum.__doc__, structure="minimum", units=spectrum.UNITS,
    measure=spectrum.measure_spectrum, compare=spectrum.compare_spectrum,
    reference_from_calculator=False, needs_structure=False,
))


def evaluate_properties(calculator: Calculator, structures: PropertyStructures,
                        references: Mapping[str, Measurement] | None = None,
                        settings: PropertySettings = PropertySettings()) -> list[dict[str, Any]]:
    """Rows of every evaluator in `settings.evaluators` for the model behind `calculator`;
    `references` maps an evaluator's name to its reference measurement (see `compute_references`)."""
    references = references or {}
    rows: list[dict[str, Any]] = []
    for name in settings.evaluators:
        rows += run_evaluator(get_evaluator(name), calculator, structures, references.get(name), settings)
    return rows


def run_evaluator(spec: EvaluatorSpec, calculator: Calculator, structures: PropertyStructures,
                  reference: Measurement | None, settings: PropertySettings) -> list[dict[str, Any]]:
    """One evaluator's rows: skipped as a whole, failed as a whole, or its comparison."""
    reason = spec.skip_reason(structures)
    if reason is None and spec.needs_reference and reference is None:
        reason = "no reference given"
    if reason is not None:
        return spec.all_rows(skipped(reason))
    start = time.perf_counter()
    try:
        measured = spec.measure(calculator, getattr(structures, spec.structure), settings)
    except MODEL_FAILURES as err:
        return spec.all_rows(Outcome(None, None, FAILED, f"{type(err).__name__}: {err}"), time.perf_counter() - start)
    return spec.rows(spec.compare(measured, reference), time.perf_counter() - start)


def compute_references(calculator: Calculator, structures: PropertyStructures,
                       settings: PropertySettings = PropertySettings()) -> dict[str, Measurement]:
    """Reference measurements by the reference calculator (e.g. the labeller) for the evaluators in
    `settings.evaluators` that take their reference from a calculator and that the structures allow:
    plain JSON-able values, to compute once and cache; the MD's is the calculator's own run under the
    same protocol. The others' references come from data (`profile_reference_from_labels`; without
    a reference calculator, `md_reference_from_trajectory`). A reference the calculator cannot
    produce raises: it is a setup error, not a result."""
    specs = [get_evaluator(name) for name in settings.evaluators]
    return {spec.name: spec.measure(calculator, getattr(structures, spec.structure), settings) for spec in specs
            if spec.reference_from_calculator and spec.skip_reason(structures) is None}
