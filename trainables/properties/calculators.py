"""mace's ASE calculator on a model file this project exported."""

from __future__ import annotations

from pathlib import Path

from ase.calculators.calculator import Calculator


def mace_calculator(model_file: str | Path, device: str = "cpu", dtype: str = "float64") -> Calculator:
    """`mace.calculators.MACECalculator` on a model file this project wrote (`trainables.stages.finetune.MODEL_FILE`,
    a state_dict, read by `trainables.core.foundation.load_foundation`) or a pickled mace model, converted
    to `dtype`: float64, because Vibrations, Phonons and the elastic constants take finite
    differences of forces and stresses. Its `directory` is the model file's folder, where evaluators
    that read the run (the spectrum's optimizer state) find it."""
    from mace.calculators import MACECalculator

    from trainables.core.foundation import load_foundation

    return MACECalculator(models=load_foundation(model_file), device=device, default_dtype=dtype,
                          directory=str(Path(model_file).parent))
