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

import numpy as np
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


ONE_CURVE = "profile"  # the curve name of a path scored without a SetReference naming its curves


@dataclass(frozen=True)
class SetReference:
    """A scored set's reference energies at the file's precision, and the curves of a path or scan.

    `energies` (eV, float64 as read, NaN where a structure has none) and `curves` (each structure's
    curve name, see `trainables.core.data.profile_curves`) are in graph order. The graphs themselves
    hold energies in the training dtype: at |E| ~ 10^4 eV float32's spacing is about 1 meV, so
    relative energies and barriers are scored against these instead."""

    energies: tuple[float, ...]
    curves: tuple[str, ...] | None = None


def predicted_energies(output: dict, batch) -> torch.Tensor:
    """Each configuration's predicted energy (eV) in float64. mace's ScaleShiftMACE (every
    foundation family) returns its per-atom energies in float64 (the E0 term, a float32 number held
    exactly, plus the float32 interaction part): summed here in float64, relative energies keep
    the model's own precision instead of float32's 1 meV spacing at |E| ~ 10^4 eV. A model without
    float64 atom energies gives its total energy as computed."""
    node_energy = output.get("node_energy")
    if node_energy is None or node_energy.dtype != torch.float64:
        return output["energy"].detach().double()
    return scatter_sum(node_energy.detach(), batch.batch, dim=0, dim_size=batch.num_graphs)


@dataclass
class ErrorAccumulator:
    """Streams errors over batches (in the set's order); reports RMSEs in the paper's units.

    Each structure counts on the labels it has (`energy_weight` / `forces_weight` of its graph > 0):
    a set with energies only gets a NaN force RMSE and the reverse. Energies are compared in float64:
    predictions as `predicted_energies`, references from `reference` (else the batch's own). The
    energies of the structures with one are kept, in order and with their curve, for the
    relative-energy errors of a path or scan (`profile_errors`).
    """

    reference: SetReference | None = None
    energy_sq_per_atom: float = 0.0
    force_sq: float = 0.0
    energy_configs: int = 0
    force_components: int = 0
    seen: int = 0
    energies: list[tuple[float, float, str]] = field(default_factory=list)  # (predicted, reference) eV, curve
    compositions: list[list[float]] = field(default_factory=list)  # atoms of each element, per energy above

    def add(self, batch, output: dict) -> None:
        has_energy = batch.energy_weight > 0
        has_forces = (batch.forces_weight > 0)[batch.batch]
        indices = range(self.seen, self.seen + batch.num_graphs)
        self.seen += batch.num_graphs
        reference = self._reference_energies(batch, indices)
        predicted = predicted_energies(output, batch)
        n_atoms = atoms_per_config(batch).double()
        de = ((predicted - reference) / n_atoms)[has_energy]
        self.energy_sq_per_atom += float((de**2).sum())
        self.energy_configs += int(has_energy.sum())
        df = (output["forces"].detach() - batch.forces)[has_forces]
        self.force_sq += float((df**2).sum())
        self.force_components += int(df.numel())
        curves = self.reference.curves if self.reference is not None and self.reference.curves else None
        self.energies.extend((float(predicted[k]), float(reference[k]), curves[i] if curves else ONE_CURVE)
                             for k, i in enumerate(indices) if has_energy[k])
        counts = scatter_sum(batch.node_attrs.detach().double(), batch.batch, dim=0, dim_size=batch.num_graphs)
        self.compositions.extend(counts[has_energy].tolist())

    def _reference_energies(self, batch, indices: range) -> torch.Tensor:
        if self.reference is None:
            return batch.energy.detach().double()
        return torch.tensor([self.reference.energies[i] for i in indices], dtype=torch.float64,
                            device=batch.energy.device)

    def rmse(self) -> dict[str, float]:
        """energy RMSE in meV/atom and force RMSE (over components) in meV/A; NaN without such labels."""
        return {
            "energy_rmse_mev_atom": _rms_mev(self.energy_sq_per_atom, self.energy_configs),
            "force_rmse_mev_a": _rms_mev(self.force_sq, self.force_components),
        }

    def offset_removed_rmse(self) -> dict[str, float]:
        """`energy_rmse_offset_removed_mev_atom`: the energy RMSE (meV/atom) left once the best
        constant per element (least squares over the structures' compositions) is taken off the
        errors: what a change of energy reference (level of theory, E0s) cannot explain. NaN
        without energies."""
        if not self.energies:
            return {"energy_rmse_offset_removed_mev_atom": math.nan}
        counts = np.asarray(self.compositions)
        residual = np.array([reference - predicted for predicted, reference, _ in self.energies])
        offsets = np.linalg.lstsq(counts, residual, rcond=None)[0]
        left = (residual - counts @ offsets) / counts.sum(axis=1)
        return {"energy_rmse_offset_removed_mev_atom": 1000.0 * float(np.sqrt(np.mean(left**2)))}

    def profile_errors(self) -> dict[str, float | list]:
        """Errors of relative energies along paths or scans, in meV, curve by curve: each structure's
        energy minus that of its curve's structure with the lowest reference energy, predicted against
        reference (the way torsion profiles, dimer curves and barrier heights are compared).
        Aggregated over curves: `rel_energy_rmse_mev` pools every structure (each counts once),
        `rel_energy_max_error_mev` is the largest over all, `barrier_error_mev` the signed
        predicted-minus-reference highest relative energy of the curve where it is largest in
        magnitude. Both profiles and each point's curve (`profile_curve`) in file order; NaN where no
        curve has 2 energies."""
        curves = _by_curve(self.energies)
        if not any(len(points) >= 2 for points in curves.values()):
            return {"rel_energy_rmse_mev": math.nan, "rel_energy_max_error_mev": math.nan, "barrier_error_mev": math.nan}
        predicted_rel, reference_rel = [], []
        for points in curves.values():
            predicted, reference = (torch.tensor(column, dtype=torch.float64) for column in zip(*points))
            lowest = int(torch.argmin(reference))
            predicted_rel.append(1000.0 * (predicted - predicted[lowest]))
            reference_rel.append(1000.0 * (reference - reference[lowest]))
        barrier_errors = [float(p.max() - r.max()) for p, r in zip(predicted_rel, reference_rel)]
        error = torch.cat(predicted_rel) - torch.cat(reference_rel)
        order = [curve for _, _, curve in self.energies]
        return {
            "rel_energy_rmse_mev": float(error.pow(2).mean().sqrt()),
            "rel_energy_max_error_mev": float(error.abs().max()),
            "barrier_error_mev": max(barrier_errors, key=abs),
            "profile_predicted_mev": _in_file_order(predicted_rel, list(curves), order),
            "profile_reference_mev": _in_file_order(reference_rel, list(curves), order),
            "profile_curve": order,
        }


def _by_curve(energies: list[tuple[float, float, str]]) -> dict[str, list[tuple[float, float]]]:
    """The (predicted, reference) energies of each curve, curves in order of first appearance."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for predicted, reference, curve in energies:
        curves.setdefault(curve, []).append((predicted, reference))
    return curves


def _in_file_order(per_curve: list[torch.Tensor], names: list[str], order: list[str]) -> list[float]:
    """Values grouped by curve (`names[i]`'s in `per_curve[i]`) put back in the structures' order."""
    queues = {name: iter(values.tolist()) for name, values in zip(names, per_curve)}
    return [next(queues[name]) for name in order]


def _rms_mev(sum_sq: float, count: int) -> float:
    return 1000.0 * (sum_sq / count) ** 0.5 if count else math.nan
