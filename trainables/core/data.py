"""Labelled structures: reading, label checks, isolated-atom energies, splits and MACE graphs.

Any ASE-readable file works (extxyz first of all). Labels are looked up explicitly and must be
present and finite: a missing key stops the run with the file and the key named, never trains on
zeros (mace 0.3.16 silently does when its KeySpecification is empty). Units: eV, eV/A, eV/A^3.
Test sets may carry energies only or forces only (`partial=True`, e.g. a torsion scan computed as
single points): the missing label is a zero placeholder with weight 0 (`energy_weight` /
`forces_weight` of the graph), which scoring leaves out; a structure needs at least one of the two.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import ase.io
import numpy as np
import torch
from ase import Atoms
from mace.data import AtomicData
from mace.data.utils import Configuration, compute_average_E0s
from mace.tools.torch_geometric import Batch
from mace.tools.utils import AtomicNumberTable
from torch.utils.data import DataLoader

from trainables.errors import DataError

ISOLATED_ATOM_TYPES = ("IsolatedAtom", "isolated_atom")
AUTO_ENERGY_KEYS = ("REF_energy", "energy")
AUTO_FORCES_KEYS = ("REF_forces", "forces")
AUTO_STRESS_KEYS = ("REF_stress", "stress")


@dataclass(frozen=True)
class LabelKeys:
    """Where the labels live; None means auto-detect (mace's `REF_*` first, then ASE's names)."""

    energy: str | None = None
    forces: str | None = None
    stress: str | None = None

    def candidates(self, quantity: str) -> tuple[str, ...]:
        explicit = getattr(self, quantity)
        auto = {"energy": AUTO_ENERGY_KEYS, "forces": AUTO_FORCES_KEYS, "stress": AUTO_STRESS_KEYS}
        return (explicit,) if explicit else auto[quantity]


@dataclass
class Labelled:
    """One structure with its reference energy (eV), forces (eV/A) and optional stress (Voigt, eV/A^3)."""

    atoms: Atoms
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None = None
    weight: float = 1.0
    head: str = "Default"
    has_energy: bool = True
    has_forces: bool = True

    @property
    def num_atoms(self) -> int:
        return len(self.atoms)


def read_structures(path: str | Path) -> list[Atoms]:
    """All frames of an ASE-readable file; a missing, unreadable or empty file raises `DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        frames = ase.io.read(path, index=":")
    except Exception as err:  # ASE raises many types for malformed files; report them as one
        raise DataError(f"cannot read {path}: {type(err).__name__}: {err}") from None
    if not frames:
        raise DataError(f"no structures in {path}")
    return frames


def _lookup(atoms: Atoms, key: str, per_atom: bool):
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return store[key]
    results = atoms.calc.results if atoms.calc is not None else {}
    return results.get(key)


def _find_label(atoms: Atoms, keys: Sequence[str], per_atom: bool):
    for key in keys:
        value = _lookup(atoms, key, per_atom)
        if value is not None:
            return np.asarray(value, dtype=float)
    return None


def _required_label(atoms: Atoms, keys: LabelKeys, quantity: str, where: str) -> np.ndarray:
    value = _find_label(atoms, keys.candidates(quantity), per_atom=quantity == "forces")
    if value is None:
        raise DataError(f"{where}: no {quantity} label (looked for key {' or '.join(keys.candidates(quantity))})")
    if not np.all(np.isfinite(value)):
        raise DataError(f"{where}: {quantity} label is not finite (NaN or inf)")
    return value


def _has_label(atoms: Atoms, keys: LabelKeys, quantity: str) -> bool:
    return _find_label(atoms, keys.candidates(quantity), per_atom=quantity == "forces") is not None


def label_structure(atoms: Atoms, keys: LabelKeys, where: str, with_stress: bool, partial: bool = False) -> Labelled:
    """Attach checked labels to one structure; `where` names it in error messages. With `partial`,
    energy or forces may be missing (not both): the missing one is a zero placeholder, flagged."""
    has_energy = not partial or _has_label(atoms, keys, "energy")
    has_forces = not partial or _has_label(atoms, keys, "forces")
    if not (has_energy or has_forces):
        raise DataError(f"{where}: neither an energy nor a forces label (looked for keys "
                        f"{' or '.join(keys.candidates('energy'))} and {' or '.join(keys.candidates('forces'))})")
    forces = _required_label(atoms, keys, "forces", where) if has_forces else np.zeros((len(atoms), 3))
    if forces.shape != (len(atoms), 3):
        raise DataError(f"{where}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
    stress = _required_label(atoms, keys, "stress", where) if with_stress else None
    if stress is not None and stress.shape == (3, 3):
        stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    energy = float(_required_label(atoms, keys, "energy", where)) if has_energy else 0.0
    return Labelled(atoms=atoms, energy=energy, forces=forces, stress=stress, has_energy=has_energy,
                    has_forces=has_forces)


def reference_energies(items: Sequence[Labelled]) -> tuple[float, ...]:
    """Each structure's energy label (eV) as read, in float64; NaN where it has none."""
    return tuple(item.energy if item.has_energy else float("nan") for item in items)


def profile_curves(items: Sequence[Labelled], key: str | None, name: str, path: str | Path) -> tuple[str, ...]:
    """Each structure's curve in a path or scan test set: structures of one composition and one value
    of `key` in `atoms.info` (`config_type` by default: files of dimer curves name the pair there).
    A curve is named by its key value, and also by its formula where one value spans compositions;
    a file without the key is one curve named `name`. Relative energies are only taken within a
    curve: a file whose structures differ in composition and carry no key raises `DataError`."""
    formulas = [item.atoms.get_chemical_formula() for item in items]
    labels = [item.atoms.info.get(key) if key else None for item in items]
    if all(label is None for label in labels):
        if len(set(formulas)) > 1:
            shown = ", ".join(sorted(set(formulas))[:4]) + (", ..." if len(set(formulas)) > 4 else "")
            raise DataError(f"{path}: profile test set {name!r} mixes {len(set(formulas))} compositions ({shown}) and "
                            f"its structures carry no {key or 'profile_group_key'!r} to split them into curves: "
                            f"mark each curve in the file (e.g. config_type=H-H) or set profile_group_key")
        return (name,) * len(items)
    labels = [name if label is None else str(label) for label in labels]
    spans = {label: {f for f, other in zip(formulas, labels) if other == label} for label in set(labels)}
    return tuple(label if len(spans[label]) == 1 else f"{label} {formula}" for label, formula in zip(labels, formulas))


def is_isolated_atom(atoms: Atoms) -> bool:
    return atoms.info.get("config_type") in ISOLATED_ATOM_TYPES


def read_labelled(path: str | Path, keys: LabelKeys = LabelKeys(), with_stress: bool = False,
                  partial: bool = False) -> list[Labelled]:
    """Read a data file and check every structure's labels; isolated-atom entries are left out.
    `partial` (test sets) accepts structures with energies only or forces only."""
    frames = [a for a in read_structures(path) if not is_isolated_atom(a)]
    if not frames:
        raise DataError(f"{path} holds only isolated atoms, no training structures")
    return [label_structure(a, keys, f"{path} (structure {i})", with_stress, partial) for i, a in enumerate(frames)]


def read_e0s(path: str | Path, keys: LabelKeys = LabelKeys()) -> dict[int, float]:
    """Isolated-atom energies {Z: eV} from the single-atom structures of a file."""
    singles = [a for a in read_structures(path) if len(a) == 1]
    if not singles:
        raise DataError(f"{path}: no single-atom structures to take isolated-atom energies from")
    return {
        int(a.numbers[0]): float(_required_label(a, keys, "energy", f"{path} (atom {a.get_chemical_symbols()[0]})"))
        for a in singles
    }


def isolated_atom_energies(path: str | Path, keys: LabelKeys = LabelKeys()) -> dict[int, float]:
    """E0s from the structures of a data file tagged `config_type=IsolatedAtom`; {} if there are none."""
    singles = [a for a in read_structures(path) if is_isolated_atom(a)]
    return {int(a.numbers[0]): float(_required_label(a, keys, "energy", f"{path} (isolated atom)")) for a in singles}


def fitted_e0s(items: Sequence[Labelled]) -> dict[int, float]:
    """Isolated-atom energies {Z: eV} fitted to the structures' energies by least squares, each
    energy the sum of its atoms' E0s (mace's `E0s="average"`, `compute_average_E0s`). Where the set's
    compositions do not tell the elements apart (one molecule throughout), the fit is the
    minimum-norm one: it sets the mean interaction energy to zero rather than estimating atoms."""
    labelled = [item for item in items if item.has_energy]
    if not labelled:
        raise DataError("e0s = 'average' needs training structures with energies")
    table = AtomicNumberTable(elements_of([labelled]))
    fitted = compute_average_E0s([to_configuration(item) for item in labelled], table)
    return {int(z): float(e) for z, e in fitted.items()}


def elements_of(sets: Sequence[Sequence[Labelled]]) -> list[int]:
    """Sorted atomic numbers present in any of the given sets."""
    return sorted({int(z) for items in sets for item in items for z in item.atoms.numbers})


def seeded_split(items: Sequence[Labelled], fraction: float, seed: int) -> tuple[list, list]:
    """Split into (train, validation) with a seeded permutation; at least one of each."""
    if len(items) < 2:
        raise DataError(f"need at least 2 structures to split off a validation set, got {len(items)}")
    order = np.random.default_rng(seed).permutation(len(items))
    n_valid = min(max(1, int(round(fraction * len(items)))), len(items) - 1)
    return [items[i] for i in order[n_valid:]], [items[i] for i in order[:n_valid]]


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Temporarily set torch's default dtype (mace builds graph tensors in the default dtype)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def to_configuration(item: Labelled) -> Configuration:
    atoms = item.atoms
    properties = {"energy": item.energy, "forces": item.forces, "stress": item.stress}
    return Configuration(
        atomic_numbers=np.asarray(atoms.numbers),
        positions=atoms.get_positions(),
        properties=properties,
        property_weights={"energy": float(item.has_energy), "forces": float(item.has_forces),
                          "stress": 0.0 if item.stress is None else 1.0},
        cell=np.asarray(atoms.get_cell()),
        pbc=tuple(bool(p) for p in atoms.get_pbc()),
        weight=item.weight,
        config_type=str(atoms.info.get("config_type", "Default")),
        head=item.head,
    )


def build_graphs(items: Sequence[Labelled], z_table: Sequence[int], r_max: float,
                 dtype: torch.dtype, heads: Sequence[str] = ("Default",)) -> list[AtomicData]:
    """Neighbour graphs (cutoff r_max, A) in `dtype`, built once and reused every epoch."""
    table = AtomicNumberTable(list(z_table))
    with default_dtype(dtype):
        return [
            AtomicData.from_config(to_configuration(item), z_table=table, cutoff=float(r_max), heads=list(heads))
            for item in items
        ]


class PackedGraphs:
    """A list of graphs as one flat tensor per attribute, for pickling.

    A data set's graphs are thousands of small tensors, which pickle (Ray's object store, a
    trial's inputs) at tens of microseconds each: seconds each way for the embedded default.
    Packed, they pickle in milliseconds; `unpack` returns equal graphs whose tensors are views of
    disjoint slices of the flat ones (in-place writes stay within their graph)."""

    def __init__(self, graphs: Sequence[AtomicData]):
        self.cls = type(graphs[0]) if graphs else AtomicData
        self.rest = [dict(graph.__dict__) for graph in graphs]  # what is not packed stays per graph
        self.shapes: dict[str, list[torch.Size]] = {}
        self.flat: dict[str, torch.Tensor] = {}
        for key in _packable_keys(self.rest):
            tensors = [state.pop(key) for state in self.rest]
            self.shapes[key] = [t.shape for t in tensors]
            self.flat[key] = torch.cat([t.detach().reshape(-1) for t in tensors])

    def unpack(self) -> list[AtomicData]:
        columns = {key: [part.reshape(shape) for part, shape in
                         zip(torch.split(flat, [shape.numel() for shape in self.shapes[key]]), self.shapes[key])]
                   for key, flat in self.flat.items()}
        graphs = []
        for i, rest in enumerate(self.rest):
            graph = object.__new__(self.cls)
            graph.__dict__.update(rest)
            graph.__dict__.update({key: column[i] for key, column in columns.items()})
            graphs.append(graph)
        return graphs


def _packable_keys(states: list[dict]) -> list[str]:
    """Attributes that are a tensor of one dtype in every graph."""
    if not states:
        return []
    keys = [k for k, v in states[0].items() if isinstance(v, torch.Tensor)]
    return [k for k in keys if all(isinstance(s.get(k), torch.Tensor) and s[k].dtype == states[0][k].dtype
                                   for s in states)]


def collate_graphs(graphs: Sequence[AtomicData]) -> Batch:
    """mace's `Batch.from_data_list`, with one `torch.cat` per attribute instead of a Python loop
    over graphs and attributes (that loop was about 7% of a training step on a CPU). The result has
    the same attributes, values and dtypes; only mace's bookkeeping for splitting a batch back into
    graphs (`to_data_list`) is left out. Graphs with a non-tensor attribute go through mace's."""
    first = graphs[0]
    keys = first.keys
    if not all(isinstance(first.__dict__.get(key), torch.Tensor) for key in keys):
        return Batch.from_data_list(list(graphs))
    batch = Batch()
    for key in first.__dict__:
        if not (key.startswith("__") and key.endswith("__")):
            batch[key] = None  # attributes that are None in the graphs stay None, as in mace's batches
    counts = [graph.num_nodes for graph in graphs]
    for key in keys:
        items = [graph.__dict__[key] for graph in graphs]
        if _increments(key):
            offsets = np.cumsum([0, *counts[:-1]]).tolist()
            items = [item + offset if offset else item for item, offset in zip(items, offsets)]
        if items[0].dim() == 0:
            batch[key] = torch.stack(items)
        else:
            batch[key] = torch.cat(items, first.__cat_dim__(key, items[0]))
    batch.batch = torch.repeat_interleave(torch.arange(len(graphs)), torch.tensor(counts))
    batch.ptr = torch.tensor(np.cumsum([0, *counts]).tolist())
    batch.__num_graphs__ = len(graphs)
    batch.__data_class__ = type(first)
    return batch


def _increments(key: str) -> bool:
    """Index attributes are offset by the nodes of the graphs before them (mace's `Data.__inc__`)."""
    return bool(re.search("(index|face)", key))


def even_batch_size(count: int, batch_size: int) -> int:
    """The size of each of the fewest batches of at most `batch_size` that split `count` configurations
    evenly: the last batch is never a tiny one (the compiled step recompiles for a single graph)."""
    batches = -(-count // batch_size)
    return max(1, -(-count // max(batches, 1)))


def make_loader(graphs: Sequence[AtomicData], batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Mini-batches; a shuffled loader draws its order from its own seeded generator."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(list(graphs), batch_size=batch_size, shuffle=shuffle, drop_last=False, generator=generator,
                      collate_fn=collate_graphs)


def training_loader(graphs: Sequence[AtomicData], batch_size: int, seed: int) -> DataLoader:
    """Shuffled, seeded mini-batches without the last partial one (as mace's trainer does; every
    configuration still comes up across epochs). A tiny last batch would also cost a recompilation
    of the compiled step, whose shapes are dynamic above a few atoms and graphs, not down to one.
    A data set smaller than one batch is one batch."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(list(graphs), batch_size=batch_size, shuffle=True, drop_last=len(graphs) >= batch_size,
                      generator=generator, collate_fn=collate_graphs)
