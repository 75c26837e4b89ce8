"""Eq. 1 against a hand computation on configurations of different sizes."""

import numpy as np
import pytest
import torch

from trainables.core.data import make_loader
from trainables.core.foundation import finetune_model
from trainables.core.loss import LossWeights, eq1_loss
from trainables.core.training import forward


def _mixed_size_batch(inputs):
    graphs = inputs.graphs["train"] + inputs.graphs["val"]
    by_size = {}
    for g in graphs:
        by_size.setdefault(int(g.positions.shape[0]), g)
    assert len(by_size) >= 2 or len(graphs) >= 2
    chosen = list(by_size.values())[:3] if len(by_size) >= 2 else graphs[:3]
    return next(iter(make_loader(chosen, len(chosen), shuffle=False)))


def _hand_eq1(batch, out, w: LossWeights) -> float:
    total, sizes = 0.0, (batch.ptr[1:] - batch.ptr[:-1]).tolist()
    for n, (start, size) in enumerate(zip(batch.ptr[:-1].tolist(), sizes)):
        de = float(out["energy"][n] - batch.energy[n]) / (size if w.per_atom_energy else 1)
        df = (out["forces"][start:start + size] - batch.forces[start:start + size]).detach().numpy()
        total += w.energy * de**2 + w.forces / (3 * size) * float(np.sum(df**2))
    return total / len(sizes)


def test_eq1_matches_hand_computation(smoke_inputs):
    model = finetune_model(smoke_inputs.foundation(), smoke_inputs.elements, smoke_inputs.e0s, torch.float32)
    batch = _mixed_size_batch(smoke_inputs)
    out = forward(model, batch, training=False)
    for weights in (LossWeights(1.0, 100.0), LossWeights(3.0, 7.0, per_atom_energy=False)):
        expected = _hand_eq1(batch, out, weights)
        assert abs(float(eq1_loss(batch, out, weights)) - expected) <= 1e-5 * abs(expected)


def test_force_term_is_per_configuration_not_per_batch(smoke_inputs):
    """A batch-wide atom mean (mace's) differs from Eq. 1 when sizes differ."""
    model = finetune_model(smoke_inputs.foundation(), smoke_inputs.elements, smoke_inputs.e0s, torch.float32)
    batch = _mixed_size_batch(smoke_inputs)
    out = forward(model, batch, training=False)
    w = LossWeights(0.0, 1.0)
    batch_mean = float(((out["forces"] - batch.forces) ** 2).mean())
    sizes = (batch.ptr[1:] - batch.ptr[:-1])
    if len(set(sizes.tolist())) > 1:
        assert abs(float(eq1_loss(batch, out, w)) - batch_mean) > 1e-6 * batch_mean


def test_relative_energy_errors_of_a_profile_by_hand():
    """Energies relative to the structure with the lowest reference energy, in meV."""
    from trainables.core.loss import ErrorAccumulator

    errors = ErrorAccumulator(energies=[(1.010, 1.000, "scan"), (1.000, 0.990, "scan"), (1.100, 1.050, "scan")])  # (predicted, reference) eV, curve
    profile = errors.profile_errors()
    assert profile["profile_reference_mev"] == pytest.approx([10.0, 0.0, 60.0])
    assert profile["profile_predicted_mev"] == pytest.approx([10.0, 0.0, 100.0])
    assert profile["rel_energy_rmse_mev"] == pytest.approx((40.0**2 / 3) ** 0.5)
    assert profile["rel_energy_max_error_mev"] == pytest.approx(40.0)
    assert profile["barrier_error_mev"] == pytest.approx(40.0)
    assert np.isnan(ErrorAccumulator().rmse()["force_rmse_mev_a"])
