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

from dataclasses import dataclass

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
    """Streams squared errors over batches; reports RMSEs in the paper's units."""

    energy_sq_per_atom: float = 0.0
    force_sq: float = 0.0
    configs: int = 0
    force_components: int = 0

    def add(self, batch, output: dict) -> None:
        n_atoms = atoms_per_config(batch)
        de = ((output["energy"] - batch.energy) / n_atoms).detach()
        self.energy_sq_per_atom += float((de**2).sum())
        self.force_sq += float(((output["forces"] - batch.forces).detach() ** 2).sum())
        self.configs += int(batch.num_graphs)
        self.force_components += int(batch.forces.numel())

    def rmse(self) -> dict[str, float]:
        """energy RMSE in meV/atom and force RMSE (over components) in meV/A."""
        return {
            "energy_rmse_mev_atom": 1000.0 * (self.energy_sq_per_atom / max(self.configs, 1)) ** 0.5,
            "force_rmse_mev_a": 1000.0 * (self.force_sq / max(self.force_components, 1)) ** 0.5,
        }
