"""Physical properties of a model through its ASE calculator: MD stability, vibrations, phonons at
Gamma and acoustic phonons near it, the phonon dispersion along a high-symmetry path, equation of
state and elastic constants, the generalized stacking-fault energy, liquid structure and transport
from Nose-Hoover MD, energy profiles (the paper's Figs. 3-5).

    calculator = mace_calculator(run_folder / MODEL_FILE)
    structures = embedded_structures(files)             # files: trainables.embedded.build_system(...)
    references = embedded_references(files, structures, settings)  # once, then cached
    rows = evaluate_properties(calculator, structures, references, settings)

A user's own data: `user_structures(files)` and `user_references(files, structures, settings)`.
Each evaluator is a spec in `EVALUATORS` (registry.py); rows and settings are in base.py.
"""

from trainables.properties.base import (
    FAILED, OK, ROW_KEYS, SKIPPED, STATUSES, UNSTABLE, EvaluationFailed, EvaluatorSpec, PropertySettings,
    PropertyStructures,
)
from trainables.properties.calculators import mace_calculator
from trainables.properties.embedded import (
    EMBEDDED_PROPERTIES, embedded_properties, embedded_references, embedded_structures,
)
from trainables.properties.md import reference_from_trajectory as md_reference_from_trajectory
from trainables.properties.profile import reference_from_labels as profile_reference_from_labels
from trainables.properties.registry import (
    EVALUATORS, compute_references, evaluate_properties, get_evaluator, register, run_evaluator, settings_from_dict,
)
from trainables.properties.user import user_references, user_structures

__all__ = [
    "EMBEDDED_PROPERTIES", "EVALUATORS", "FAILED", "OK", "ROW_KEYS", "SKIPPED", "STATUSES", "UNSTABLE",
    "EvaluationFailed", "EvaluatorSpec", "PropertySettings", "PropertyStructures", "compute_references",
    "embedded_properties", "embedded_references", "embedded_structures", "evaluate_properties",
    "get_evaluator", "mace_calculator", "md_reference_from_trajectory", "profile_reference_from_labels",
    "register", "run_evaluator", "settings_from_dict", "user_references", "user_structures",
]
