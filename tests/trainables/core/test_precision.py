"""Scores at the precision of the data: DFT-sized total energies (|E| ~ 10^4 eV, where float32's
spacing is about 1 meV), relative energies per curve, fitted E0s."""

import copy

import numpy as np
import pytest
import torch
from ase import Atoms

from trainables.core import data as D
from trainables.core.foundation import finetune_model
from trainables.core.loss import ErrorAccumulator, SetReference, predicted_energies
from trainables.core.training import forward
from trainables.errors import DataError

# isolated-atom energies of DFT's size (eV): a biphenyl then totals about -1.3e4 eV
DFT_SIZED_E0S = {1: -13.6, 6: -1030.0, 7: -1485.0, 8: -2041.0}


def _dft_sized_model(inputs, dtype):
    e0s = {z: DFT_SIZED_E0S[z] for z in inputs.elements}
    return finetune_model(inputs.foundation(), inputs.elements, e0s, torch.float32).to(dtype)


def _energies(model, items, elements, r_max, dtype):
    graphs = D.build_graphs(items, elements, r_max, dtype)
    batch = next(iter(D.make_loader(graphs, len(graphs), shuffle=False)))
    output = forward(model, batch, training=False)
    return predicted_energies(output, batch), output["energy"].detach().double()


def test_predicted_relative_energies_keep_float64_precision_at_dft_sized_totals(smoke_inputs, smoke_files):
    """Summed in float64 from the model's float64 atom energies, a float32 model's relative energies
    agree with the same model run in float64 to 0.01 meV; its float32 total energy cannot."""
    items = D.read_labelled(smoke_files.tests["dihedral"], partial=True)
    r_max = float(smoke_inputs.foundation().r_max)
    model32 = _dft_sized_model(smoke_inputs, torch.float32)
    model64 = copy.deepcopy(model32).double()
    summed, total32 = _energies(model32, items, smoke_inputs.elements, r_max, torch.float32)
    exact, _ = _energies(model64, items, smoke_inputs.elements, r_max, torch.float64)
    assert float(exact.abs().min()) > 1.0e4
    relative = (lambda e: 1000.0 * (e - e[0]))  # meV
    assert float((relative(summed) - relative(exact)).abs().max()) < 0.01
    assert float((relative(total32) - relative(exact)).abs().max()) > 0.05  # what float32 totals would give


def test_reference_relative_energies_are_those_of_the_file_in_float64():
    """Energies near -9,000 eV differing by fractions of a meV: kept as read, they come back exact."""
    reference = -9123.456789 + 1e-3 * np.array([0.08, 0.0, 0.29, 1.24, 3.48, 14.07])  # eV
    errors = ErrorAccumulator(SetReference(tuple(reference), ("path",) * len(reference)))
    errors.energies = [(float(e), float(e), "path") for e in reference]  # as `add` stores them
    profile = errors.profile_errors()
    expected = 1000.0 * (reference - reference.min())
    assert profile["profile_reference_mev"] == pytest.approx(expected.tolist(), abs=1e-6)
    stored32 = reference.astype(np.float32).astype(np.float64)  # what graphs in float32 hold
    assert np.abs(1000.0 * (stored32 - stored32.min()) - expected).max() > 0.1


def test_relative_energies_are_taken_within_each_curve():
    """Two dimer curves of different pairs: each relative to its own minimum; the barrier error is
    that of the curve where it is largest in magnitude."""
    points = [(-10.00, -10.00, "H-H"), (-9.90, -9.95, "H-H"), (-20.00, -20.00, "C-C"),
              (-19.75, -19.80, "C-C"), (-9.50, -9.40, "H-H")]
    profile = ErrorAccumulator(energies=points).profile_errors()
    assert profile["profile_reference_mev"] == pytest.approx([0.0, 50.0, 0.0, 200.0, 600.0])
    assert profile["profile_predicted_mev"] == pytest.approx([0.0, 100.0, 0.0, 250.0, 500.0])
    assert profile["profile_curve"] == ["H-H", "H-H", "C-C", "C-C", "H-H"]
    assert profile["rel_energy_max_error_mev"] == pytest.approx(100.0)
    assert profile["barrier_error_mev"] == pytest.approx(-100.0)  # H-H: 500 - 600; C-C: 250 - 200


def _labelled(symbols, distance, **info):
    atoms = Atoms(symbols, positions=[[0, 0, 0], [0, 0, distance]])
    atoms.info.update(info)
    return D.Labelled(atoms=atoms, energy=-1.0, forces=np.zeros((2, 3)), has_forces=False)


def test_curves_come_from_config_type_and_composition():
    dimers = [_labelled("H2", d, config_type="H-H") for d in (0.7, 0.8)] + [_labelled("CH", 1.1, config_type="C-H")]
    assert D.profile_curves(dimers, "config_type", "dimers", "dimers.xyz") == ("H-H", "H-H", "C-H")
    mixed = [_labelled("H2", 0.7, config_type="pairs"), _labelled("CH", 1.1, config_type="pairs")]
    assert D.profile_curves(mixed, "config_type", "dimers", "dimers.xyz") == ("pairs H2", "pairs CH")
    one = [_labelled("H2", d) for d in (0.7, 0.8)]
    assert D.profile_curves(one, "config_type", "scan", "scan.xyz") == ("scan", "scan")


def test_a_path_file_mixing_compositions_without_a_key_is_refused():
    mixed = [_labelled("H2", 0.7), _labelled("CH", 1.1), _labelled("C2", 1.3)]
    with pytest.raises(DataError, match=r"dimers.xyz: profile test set 'dimers' mixes 3 compositions .*config_type"):
        D.profile_curves(mixed, "config_type", "dimers", "dimers.xyz")


def test_fitted_e0s_recover_planted_atom_energies():
    planted = {1: -13.6, 6: -1030.0}
    molecules = [Atoms("CH4"), Atoms("C2H6"), Atoms("C2H2"), Atoms("H2")]
    items = [D.Labelled(atoms=m, energy=sum(planted[z] for z in m.numbers), forces=np.zeros((len(m), 3)))
             for m in molecules]
    assert D.fitted_e0s(items) == pytest.approx(planted, abs=1e-9)


def test_estimated_e0s_absorb_a_foundation_offset_per_element(smoke_inputs, smoke_files):
    """Data on another energy reference (each element's energy moved by a constant, as between
    xTB and DFT): the estimated E0s move the foundation's by what the data's compositions tell,
    here one molecule's total shift."""
    from trainables.core.foundation import foundation_e0s
    from trainables.stages.inputs import estimated_e0s

    foundation = smoke_inputs.foundation()
    items = D.read_labelled(smoke_files.train)[:6]
    shift = {1: -3.0, 6: -1000.0}
    moved = [D.Labelled(atoms=i.atoms, energy=i.energy + sum(shift[z] for z in i.atoms.numbers), forces=i.forces)
             for i in items]
    before, after = foundation_e0s(foundation), estimated_e0s(foundation, moved)
    counts = {z: int((items[0].atoms.numbers == z).sum()) for z in shift}
    moved_by = sum(counts[z] * (after[z] - estimated_e0s(foundation, items)[z]) for z in shift)
    assert moved_by == pytest.approx(sum(counts[z] * shift[z] for z in shift), abs=1e-3)
    assert set(after) == set(shift) and all(after[z] != before[z] for z in shift)


def test_a_per_element_offset_is_found_in_the_zero_shot_errors():
    """Energies moved by a constant per element leave no error once the best constants are removed;
    noise on them is what remains."""
    compositions = [[6, 6], [2, 1], [4, 2], [0, 2], [3, 8]]  # atoms of H and C per structure
    shift = np.array([-3.0, -1000.0])
    predicted = [-50.0, -12.0, -25.0, -8.0, -70.0]
    errors = ErrorAccumulator(energies=[(p, p + float(np.dot(c, shift)), "x") for p, c in zip(predicted, compositions)],
                              compositions=compositions)
    assert errors.offset_removed_rmse()["energy_rmse_offset_removed_mev_atom"] < 1e-6
    noise = [0.010, -0.020, 0.015, -0.005, 0.020]  # eV
    errors.energies = [(p, r + n, c) for (p, r, c), n in zip(errors.energies, noise)]
    left = errors.offset_removed_rmse()["energy_rmse_offset_removed_mev_atom"]
    assert 0.5 < left < 1000.0 * max(abs(n) / sum(c) for n, c in zip(noise, compositions)) + 1e-9
