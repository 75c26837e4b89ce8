"""Batching: `collate_graphs` builds the same batches as mace's own collation, molecules and periodic
cells with stress alike, two heads included, and the loaders use it."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from mace.tools.torch_geometric import Batch

from trainables.core import data as D


def _assert_same_batch(ours: Batch, mace: Batch) -> None:
    assert ours.keys == mace.keys
    assert ours.num_graphs == mace.num_graphs
    for key in mace.keys:
        a, b = ours[key], mace[key]
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), key
    assert {k for k, v in ours.__dict__.items() if v is None} >= {k for k in mace.__dict__
                                                                 if not k.startswith("__") and mace[k] is None}


def _periodic_graphs() -> list:
    rng = np.random.default_rng(0)
    items = []
    for size in (1, 2, 1):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((size, 1, 1))
        atoms.symbols[0] = "Au"
        atoms.rattle(0.05, seed=int(rng.integers(1000)))
        atoms.calc = EMT()
        items.append(D.Labelled(atoms, atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(),
                                head="pt_head" if size == 2 else "Default"))
    return D.build_graphs(items, [29, 79], r_max=4.0, dtype=torch.float64, heads=("Default", "pt_head"))


@pytest.mark.parametrize("indices", [[0], [0, 1, 2, 3], [5, 2, 7, 1, 0]])
def test_collated_molecules_equal_mace_batches(smoke_inputs, indices):
    graphs = [smoke_inputs.graphs["train"][i] for i in indices]
    _assert_same_batch(D.collate_graphs(graphs), Batch.from_data_list(graphs))


def test_collated_periodic_cells_with_stress_and_two_heads_equal_mace_batches():
    graphs = _periodic_graphs()
    ours = D.collate_graphs(graphs)
    _assert_same_batch(ours, Batch.from_data_list(graphs))
    assert ours.edge_index.max() == ours.num_nodes - 1  # offsets reach the last graph's atoms
    assert ours.head.tolist() == [0, 1, 0]


def test_loaders_batch_through_collate_graphs(smoke_inputs):
    graphs = smoke_inputs.graphs["train"][:8]
    for loader in (D.make_loader(graphs, 4, shuffle=False), D.training_loader(graphs, 4, seed=0)):
        assert loader.collate_fn is D.collate_graphs
    first = next(iter(D.make_loader(graphs, 4, shuffle=False)))
    _assert_same_batch(first, Batch.from_data_list(graphs[:4]))
