"""Resolve a run's data and foundation into prepared, shareable inputs.

`prepare_inputs(config)` reads and checks every file once, builds the neighbour graphs and keeps
the foundation as a plain config + state_dict, so a study can prepare them once and hand the same
object (picklable) to every trial instead of re-parsing per trial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from mace.data import AtomicData
from mace.tools.scripts_utils import extract_config_mace_model

from trainables import data as D
from trainables.config import FinetuneConfig
from trainables.errors import ConfigError, DataError
from trainables.foundation import build_model, check_elements, config_to_plain, foundation_e0s, load_foundation


@dataclass(frozen=True)
class Sources:
    """Where a run's data and foundation come from, after resolving embedded defaults."""

    train: Path
    valid: Path | None
    tests: dict[str, Path]
    e0s: Path | None
    foundation: str
    has_stress: bool


@dataclass
class PreparedInputs:
    """Checked, graph-built data plus the foundation as plain values (cheap to share and rebuild)."""

    elements: list[int]
    e0s: dict[int, float]
    dtype: str
    graphs: dict[str, list[AtomicData]]  # "train", "val" and every named test set
    has_stress: bool
    foundation_config: dict[str, Any]
    foundation_state: dict[str, torch.Tensor] = field(repr=False)
    sources: Sources | None = None

    @property
    def test_names(self) -> list[str]:
        return [name for name in self.graphs if name not in ("train", "val")]

    def foundation(self) -> torch.nn.Module:
        dtype = getattr(torch, self.dtype)
        with D.default_dtype(dtype):
            model = build_model(self.foundation_config)
        model.load_state_dict(self.foundation_state)
        return model.eval()


def resolve_sources(config: FinetuneConfig) -> Sources:
    if config.train_file is not None:
        if config.foundation is None:
            raise ConfigError("a foundation model (file or mace_mp name) is required with train_file")
        return Sources(
            train=Path(config.train_file),
            valid=Path(config.valid_file) if config.valid_file else None,
            tests={name: Path(p) for name, p in config.test_files.items()},
            e0s=Path(config.e0s_file) if config.e0s_file else None,
            foundation=config.foundation,
            has_stress=config.stress_weight > 0,
        )
    return embedded_sources(config)


def embedded_sources(config: FinetuneConfig) -> Sources:
    from trainables.embedded import build_system, default_system_name
    from trainables.pretrain import embedded_foundation

    name = config.system or default_system_name()
    files = build_system(name, config.data_size)
    foundation = config.foundation or str(embedded_foundation(name, config.data_size))
    return Sources(train=files.train, valid=None, tests=dict(files.tests), e0s=files.e0s,
                   foundation=foundation, has_stress=files.has_stress and config.stress_weight > 0)


def resolve_e0s(sources: Sources, keys: D.LabelKeys, foundation: torch.nn.Module) -> dict[int, float]:
    """E0s from the E0 file, else IsolatedAtom entries of the training file, else the foundation's."""
    if sources.e0s is not None:
        return D.read_e0s(sources.e0s, keys)
    return D.isolated_atom_energies(sources.train, keys) or foundation_e0s(foundation)


def read_sets(sources: Sources, config: FinetuneConfig, keys: D.LabelKeys) -> dict[str, list[D.Labelled]]:
    train = D.read_labelled(sources.train, keys, sources.has_stress)
    if sources.valid is not None:
        valid = D.read_labelled(sources.valid, keys, sources.has_stress)
    else:
        train, valid = D.seeded_split(train, config.valid_fraction, config.split_seed)
    sets = {"train": train, "val": valid}
    for name, path in sources.tests.items():
        sets[name] = D.read_labelled(path, keys, sources.has_stress)
    return sets


def prepare_inputs(config: FinetuneConfig) -> PreparedInputs:
    """Read, check and graph every data set once; load the foundation once."""
    sources = resolve_sources(config)
    keys = D.LabelKeys(config.energy_key, config.forces_key, config.stress_key)
    foundation = load_foundation(sources.foundation)
    sets = read_sets(sources, config, keys)
    elements = D.elements_of(list(sets.values()))
    check_elements(foundation, elements)
    e0s = resolve_e0s(sources, keys, foundation)
    missing = sorted(set(elements) - set(e0s))
    if missing:
        raise DataError(f"no isolated-atom energy for atomic number(s) {missing} in {sources.e0s or sources.train}")
    dtype = getattr(torch, config.dtype)
    r_max = float(foundation.r_max)
    graphs = {name: D.build_graphs(items, elements, r_max, dtype) for name, items in sets.items()}
    return PreparedInputs(
        elements=elements, e0s=e0s, dtype=config.dtype, graphs=graphs, has_stress=sources.has_stress,
        foundation_config=config_to_plain(extract_config_mace_model(foundation)),
        foundation_state={k: v.detach().to(dtype) if v.is_floating_point() else v
                          for k, v in foundation.state_dict().items()},
        sources=sources,
    )
