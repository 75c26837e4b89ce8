"""The fine-tuning objective (Eq. 1 of the paper) and the error metrics.

    L = (1/N_conf) sum_n c_n [ w_E (E_n^pred - E_n)^2 + w_F / (3 N_n) ||F_n^pred - F_n||^2
                               + w_S / 9 ||S_n^pred - S_n||^2 ]

with N_n the atoms of configuration n and c_n its weight (1 unless a data set weighs configurations,
as the replay head does). With `per_atom_energy` the energy term uses E/N_n, as mace trains.
Unlike mace's own weighted loss, whose force term averages over all atoms of a batch, each
configuration's force error is normalised by its own atom count, so small and large molecules
count equally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from mace.tools.scatter import scatter_sum


@dataclass(frozen=True)
class LossWeights:
    energy: float = 1.0
    forces: float = 100.0
    stress: float = 0.0
    per_atom_energy: bool = True


def atoms_per_config(batch) -> torch.Tensor:
    return (batch.ptr[1:] - batch.ptr[:-1]).to(batch.positions.dtype)


def per_config_force_sq(batch, forces_pred: torch.Tensor) -> torch.Tensor:
    """sum over atoms and components of (F_pred - F)^2, one value per configuration."""
    sq = ((forces_pred - batch.forces) ** 2).sum(dim=-1)
    return scatter_sum(sq, batch.batch, dim=0, dim_size=batch.num_graphs)


def per_config_loss(batch, output: dict, weights: LossWeights) -> torch.Tensor:
    """The bracket of Eq. 1 for each configuration of the batch (before the mean)."""
    n_atoms = atoms_per_config(batch)
    energy_error = output["energy"] - batch.energy
    if weights.per_atom_energy:
        energy_error = energy_error / n_atoms
    terms = weights.energy * energy_error**2
    terms = terms + weights.forces * per_config_force_sq(batch, output["forces"]) / (3 * n_atoms)
    if weights.stress > 0:
        stress_sq = ((output["stress"] - batch.stress) ** 2).sum(dim=(-1, -2))
        terms = terms + weights.stress * stress_sq / 9
    return batch.weight * terms


def loss_sum(batch, output: dict, weights: LossWeights) -> torch.Tensor:
    """Sum of the per-configuration terms; divide by the configuration count for Eq. 1's mean."""
    return per_config_loss(batch, output, weights).sum()


def eq1_loss(batch, output: dict, weights: LossWeights) -> torch.Tensor:
    """Eq. 1 over one batch: the mean over its configurations."""
    return per_config_loss(batch, output, weights).mean()


@dataclass
class ErrorAccumulator:
    """Streams errors over batches; reports RMSEs in the paper's units.

    Each structure counts on the labels it has (`energy_weight` / `forces_weight` of its graph > 0):
    a set with energies only gets a NaN force RMSE and the reverse. The energies of the structures
    with one are kept, in order, for the relative-energy errors of a path or scan (`profile_errors`).
    """

    energy_sq_per_atom: float = 0.0
    force_sq: float = 0.0
    energy_configs: int = 0
    force_components: int = 0
    energies: list[tuple[float, float]] = field(default_factory=list)  # (predicted, reference) in eV

    def add(self, batch, output: dict) -> None:
        has_energy = batch.energy_weight > 0
        has_forces = (batch.forces_weight > 0)[batch.batch]
        predicted, reference = output["energy"].detach()[has_energy], batch.energy[has_energy]
        de = (predicted - reference) / atoms_per_config(batch)[has_energy]
        self.energy_sq_per_atom += float((de**2).sum())
        self.energy_configs += int(has_energy.sum())
        df = (output["forces"].detach() - batch.forces)[has_forces]
        self.force_sq += float((df**2).sum())
        self.force_components += int(df.numel())
        self.energies.extend(zip(predicted.tolist(), reference.tolist()))

    def rmse(self) -> dict[str, float]:
        """energy RMSE in meV/atom and force RMSE (over components) in meV/A; NaN without such labels."""
        return {
            "energy_rmse_mev_atom": _rms_mev(self.energy_sq_per_atom, self.energy_configs),
            "force_rmse_mev_a": _rms_mev(self.force_sq, self.force_components),
        }

    def profile_errors(self) -> dict[str, float | list[float]]:
        """Errors of relative energies along a path or scan, in meV: each structure's energy minus
        that of the structure with the lowest reference energy, predicted against reference (the way
        torsion profiles and barrier heights are compared). `rel_energy_rmse_mev` and
        `rel_energy_max_error_mev` over the structures, `barrier_error_mev` = predicted minus reference
        highest relative energy, and both profiles in file order; NaN with fewer than 2 energies."""
        if len(self.energies) < 2:
            return {"rel_energy_rmse_mev": math.nan, "rel_energy_max_error_mev": math.nan, "barrier_error_mev": math.nan}
        predicted, reference = (torch.tensor(column, dtype=torch.float64) for column in zip(*self.energies))
        lowest = int(torch.argmin(reference))
        predicted_rel, reference_rel = 1000.0 * (predicted - predicted[lowest]), 1000.0 * (reference - reference[lowest])
        error = predicted_rel - reference_rel
        return {
            "rel_energy_rmse_mev": float(error.pow(2).mean().sqrt()),
            "rel_energy_max_error_mev": float(error.abs().max()),
            "barrier_error_mev": float(predicted_rel.max() - reference_rel.max()),
            "profile_predicted_mev": predicted_rel.tolist(),
            "profile_reference_mev": reference_rel.tolist(),
        }


def _rms_mev(sum_sq: float, count: int) -> float:
    return 1000.0 * (sum_sq / count) ** 0.5 if count else math.nan
