"""Curvature at a model's final weights (trainables.core.curvature): the Hessian H of Eq. 1
(energies and autograd forces) on a fixed sample of the run's training configurations, and the
preconditioned P^(1/2) H P^(1/2) with P from the optimizer's state saved beside the model
(`optimizer_state.pt`): top eigenvalue (eigsh), trace (Hutchinson), spectral density (stochastic
Lanczos quadrature), effective condition number and Appendix A's alpha.

It reads the run, not a structure: the model file's folder (the calculator's `directory`) must hold
the optimizer record, which also names the run's data and loss. Products run in float64 on the
calculator's device. Its command on one run folder: `python -m trainables.spectrum RUN_FOLDER`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import Calculator

from trainables.errors import ConfigError
from trainables.properties.base import Measurement, Outcome, PropertySettings

if TYPE_CHECKING:  # torch and the curvature code load with the first measurement, not with the registry
    import torch

    from trainables.core.curvature import OptimizerRecord, Quadrature

OPERATORS = {"H": "L/theta^2", "PH": "P-scaled"}  # the Hessian, and P^(1/2) H P^(1/2) (P's units vary by optimizer)
PER_OPERATOR = ("lambda_max", "lambda_low", "lambda_min", "kappa", "trace", "negative_mass")
UNITS = {
    **{f"{op}_{q}": ("1" if q in ("kappa", "negative_mass") else unit) for op, unit in OPERATORS.items()
       for q in PER_OPERATOR},
    "alpha": "1", "hessian_vector_products": "1", "hessian_vector_seconds": "s",
}
PROBE_SEED = 0  # the same Rademacher probes for every model and both operators: their difference is the model's


def sample_indices(count: int, size: int) -> list[int]:
    """`size` indices spread evenly over `count` configurations (all of them when fewer): a fixed,
    seed-free sample, the same for every model of a study."""
    return sorted({int(i) for i in np.linspace(0, count - 1, min(size, count))})


def run_parameters(model: torch.nn.Module, record: OptimizerRecord) -> dict[str, torch.Tensor]:
    """The model's tensors the optimizer trained, in the record's order, with gradients on."""
    named = dict(model.named_parameters())
    missing = [name for name in record.parameters if name not in named]
    if missing:
        raise ConfigError(f"the optimizer record names {len(missing)} parameter(s) the model lacks, e.g. {missing[0]!r}: "
                          "a run of a method that changes the model (LoRA) or of another model")
    for name in record.parameters:
        named[name].requires_grad_(True)
    return {name: named[name] for name in record.parameters}


def run_hessian(folder: Path, record: OptimizerRecord, settings: PropertySettings, device: torch.device):
    """(H over the run's sample, the model's trained parameters) at the folder's model, in float64."""
    import torch

    from trainables.core.config import FinetuneConfig
    from trainables.core.curvature import Eq1Hessian
    from trainables.core.foundation import load_foundation
    from trainables.stages.finetune import MODEL_FILE, loss_weights
    from trainables.stages.inputs import prepare_inputs

    config = FinetuneConfig.from_dict({**record.config, "dtype": "float64", "compile": False})
    if config.mode != "naive":
        raise ConfigError(f"the spectrum evaluator measures naive-mode runs; this run's mode is {config.mode!r}")
    graphs = prepare_inputs(config).graphs["train"]
    sample = [graphs[i] for i in sample_indices(len(graphs), settings.spectrum_configurations)]
    model = load_foundation(folder / MODEL_FILE).to(torch.float64).to(device)
    parameters = run_parameters(model, record)
    return Eq1Hessian(model, parameters, sample, loss_weights(config), device, batch_size=len(sample)), parameters


def operator_spectrum(operator, settings: PropertySettings) -> dict[str, Any]:
    """The measurements of one symmetric operator, and its SLQ quadrature (for the density)."""
    from trainables.core.curvature import effective_condition_number, stochastic_lanczos_quadrature, top_eigenvalues

    lambda_max = float(top_eigenvalues(operator, k=settings.spectrum_top_eigenvalues, tol=1e-3, seed=PROBE_SEED,
                                       basis=settings.spectrum_lanczos_steps)[0])
    quadrature = stochastic_lanczos_quadrature(operator, settings.spectrum_lanczos_steps, settings.spectrum_probes,
                                               seed=PROBE_SEED)
    floor = settings.spectrum_relative_floor * lambda_max
    kappa, low = effective_condition_number(lambda_max, quadrature, settings.spectrum_relative_floor,
                                            settings.spectrum_quantile)
    nodes, weights = quadrature.pooled()
    return {"lambda_max": lambda_max, "lambda_low": low, "lambda_min": float(nodes.min()), "kappa": kappa,
            "trace": quadrature.trace, "negative_mass": float(weights[nodes < -floor].sum()),
            "quadrature": quadrature_json(quadrature)}


def quadrature_json(quadrature: Quadrature) -> dict[str, list[list[float]]]:
    return {"nodes": [n.tolist() for n in quadrature.nodes], "weights": [w.tolist() for w in quadrature.weights]}


def measure_run(folder: Path, settings: PropertySettings, device: str = "cpu") -> Measurement:
    """The spectra of H and of P^(1/2) H P^(1/2) at the model saved in run `folder`, and their cost."""
    from trainables.core.curvature import OptimizerRecord, alpha_exponent, preconditioned, preconditioner_for
    from trainables.core.training import resolve_device

    folder = Path(folder)
    record = OptimizerRecord.load(folder)
    hessian, parameters = run_hessian(folder, record, settings, resolve_device(device))
    preconditioner = preconditioner_for(record)
    spectra = {"H": operator_spectrum(hessian, settings),
               "PH": operator_spectrum(preconditioned(hessian, preconditioner.root(record, parameters)), settings)}
    return {"optimizer": record.optimizer, "preconditioner": preconditioner.name, "spectra": spectra,
            "alpha": alpha_exponent(spectra["PH"]["kappa"], spectra["H"]["kappa"]),
            "claimed_alpha": preconditioner.claimed_alpha,
            "hessian_vector_products": hessian.matvecs, "hessian_vector_seconds": hessian.seconds,
            "configurations": len(hessian.batches[0].ptr) - 1, "parameters": hessian.shape[0]}


def measure_spectrum(calculator: Calculator, _structure: Any, settings: PropertySettings) -> Measurement:
    """The evaluator's measure: the run folder is the calculator's model file's (`directory`)."""
    device = str(next(calculator.models[0].parameters()).device)
    return measure_run(Path(calculator.directory), settings, device)


def compare_spectrum(measured: Measurement, _reference: Measurement | None) -> dict[str, Outcome]:
    """Measurements without a reference (no labeller has an optimizer), but alpha's: Appendix A's
    claim for the model's preconditioner (1 Adam-type, 0 SGD; none for L-BFGS over the whole space).
    The SLQ quadrature (nodes and weights per probe, JSON) is in the trace rows' notes, for the
    densities of `analysis spectrum`."""
    note = f"P: {measured['preconditioner']} ({measured['optimizer']}); {measured['configurations']} configurations, " \
           f"{measured['parameters']} parameters"
    outcomes = {"alpha": Outcome(measured["alpha"], measured["claimed_alpha"], note=note),
                "hessian_vector_products": Outcome(float(measured["hessian_vector_products"])),
                "hessian_vector_seconds": Outcome(measured["hessian_vector_seconds"])}
    for op, spectrum in measured["spectra"].items():
        for quantity in PER_OPERATOR:
            text = json.dumps(spectrum["quadrature"]) if quantity == "trace" else note
            outcomes[f"{op}_{quantity}"] = Outcome(spectrum[quantity], note=text)
    return outcomes
