"""Shared sampling helpers for the embedded systems: labelled snapshots and seeded Langevin MD.

Every generator in ``xtb`` and ``emt`` builds its data sets from these few
functions, so that all labels are stored the same way (a ``SinglePointCalculator`` carrying
energy in eV, forces in eV/A and, for periodic cells, stress in eV/A^3) and every trajectory draws
from its own named random stream.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta


@dataclass(frozen=True)
class MDSettings:
    """Langevin NVT settings: time step (fs), friction (1/fs), steps before the first sample and between samples."""

    timestep_fs: float
    friction_per_fs: float
    equilibration_steps: int
    sample_interval: int


@dataclass
class GeneratedSets:
    """Labelled configurations of one embedded system, before they are written to disk."""

    pretrain: list[Atoms]
    train: list[Atoms]
    tests: dict[str, list[Atoms]]
    e0s: list[Atoms]
    notes: list[str] = field(default_factory=list)


def stream_rng(seed: int, stream: str) -> np.random.Generator:
    """A random generator for one named stream (e.g. ``"test_600K"``), independent of all other streams.

    The stream name is hashed with CRC32 (stable across processes, unlike ``hash``), so adding or
    resizing one trajectory never shifts the random numbers of another.
    """
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


def labelled(atoms: Atoms, config_type: str, with_stress: bool = False, **info) -> Atoms:
    """A clean copy of ``atoms`` carrying the attached calculator's results as a ``SinglePointCalculator``.

    The copy keeps only species, positions, cell and pbc (no constraints, no momenta), so it writes
    to extxyz with plain ``energy=`` / ``forces`` (/ ``stress=``) keys. Forces are the raw
    calculator forces, not the ones projected by any constraint.
    """
    snapshot = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    results = {
        "energy": atoms.get_potential_energy(),
        "forces": atoms.get_forces(apply_constraint=False),
    }
    if with_stress:
        results["stress"] = atoms.get_stress()
    snapshot.calc = SinglePointCalculator(snapshot, **results)
    snapshot.info["config_type"] = config_type
    snapshot.info.update(info)
    return snapshot


def sample_langevin(
    atoms: Atoms,
    temperature_K: float,
    n_samples: int,
    md: MDSettings,
    rng: np.random.Generator,
    config_type: str,
    with_stress: bool = False,
    **info,
) -> list[Atoms]:
    """Run seeded Langevin MD on ``atoms`` (calculator attached) and return ``n_samples`` labelled snapshots.

    Velocities start from a Maxwell-Boltzmann distribution at ``temperature_K`` (ASE >= 3.29
    ``thermalize_momenta``), with centre-of-mass motion removed, and rotation too for molecules;
    after ``md.equilibration_steps`` one snapshot is taken every ``md.sample_interval`` steps. The
    centre of mass is held by ``FixCom`` (ASE's replacement for ``Langevin(fixcm=True)``), which
    replaces any constraint already on ``atoms``; ``atoms`` is moved in place.
    """
    thermalize_momenta(atoms, temperature_K, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        # Linear molecules: ASE computes 0/0 for the axial moment of inertia, then discards it.
        with np.errstate(invalid="ignore"):
            ZeroRotation(atoms)
    atoms.set_constraint(FixCom())
    dynamics = Langevin(
        atoms,
        timestep=md.timestep_fs * units.fs,
        temperature_K=temperature_K,
        friction=md.friction_per_fs / units.fs,
        fixcm=False,
        rng=rng,
    )
    dynamics.run(md.equilibration_steps)
    samples = []
    for _ in range(n_samples):
        dynamics.run(md.sample_interval)
        samples.append(labelled(atoms, config_type, with_stress, temperature_K=temperature_K, **info))
    return samples
