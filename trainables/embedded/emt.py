"""The "cu3au-emt" embedded system: ASE's EMT potential for fcc metals, periodic cells with stress.

The fallback system where tblite is not installed: it needs nothing beyond ASE.

Pre-training corpus: single points of small cells (4, 8 or 16 atoms) of the seven EMT metals (Al,
Cu, Ag, Au, Ni, Pd, Pt) in fcc, bcc and hcp lattices, plus random binary fcc alloys of two of them.
Every cell has the metal's experimental atomic volume (Vegard's law for alloys), a random
symmetric strain with components uniform in +-3 %, and a Gaussian rattle of 0.02-0.12 A.

Fine-tuning target: ordered L1_2 Cu3Au, 32 atoms (2x2x2 of the cubic 4-atom cell at its EMT
lattice constant). Train: 300 K Langevin MD. Tests: independent 300 K, 600 K and 1200 K MD, a
rattled Cu(111) slab (four layers, 3x3 in plane, 12 A of vacuum, periodic in all three directions
so that stress stays defined) and 300 K MD of the Cu3Au cell with one Cu vacancy.

Isolated-atom energies: each of the seven metals alone in a 20 A box without periodicity (energy and
forces only; EMT's zero of energy is the bulk metal, so these are positive).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ase
import numpy as np
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.data import atomic_numbers, reference_states
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from trainables.embedded.sampling import GeneratedSets, MDSettings, labelled, sample_langevin, stream_rng

METALS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
LATTICES = ("fcc", "bcc", "hcp")
# Repeats of the conventional cell (fcc: 4 atoms, bcc and hcp: 2) giving 4, 8 or 16 atoms.
REPEATS = {
    "fcc": ((1, 1, 1), (2, 1, 1), (2, 2, 1)),
    "bcc": ((2, 1, 1), (2, 2, 1), (2, 2, 2)),
    "hcp": ((2, 1, 1), (2, 2, 1), (2, 2, 2)),
}
IDEAL_C_OVER_A = np.sqrt(8.0 / 3.0)
MAX_STRAIN = 0.03
RATTLE_RANGE_A = (0.02, 0.12)
TEST_TEMPERATURES_K = {"300K": 300.0, "600K": 600.0, "1200K": 1200.0}
TEST_NAMES = (*TEST_TEMPERATURES_K, "slab", "vacancy")
TRAIN_TEMPERATURE_K = 300.0
SLAB_VACUUM_A = 6.0  # on each side
ISOLATED_BOX_A = 20.0


@dataclass(frozen=True)
class Cu3AuPlan:
    """How much data one size of "cu3au-emt" generates.

    ``pretrain_per_lattice``: cells per (metal, lattice); ``pretrain_alloys``: random binary alloy cells.
    """

    pretrain_per_lattice: int
    pretrain_alloys: int
    train_samples: int
    test_samples: int
    target_md: MDSettings


PLANS = {
    "full": Cu3AuPlan(
        pretrain_per_lattice=50,
        pretrain_alloys=450,
        train_samples=300,
        test_samples=100,
        target_md=MDSettings(timestep_fs=2.0, friction_per_fs=0.02, equilibration_steps=100, sample_interval=10),
    ),
    "smoke": Cu3AuPlan(
        pretrain_per_lattice=2,
        pretrain_alloys=18,
        train_samples=20,
        test_samples=8,
        target_md=MDSettings(timestep_fs=2.0, friction_per_fs=0.02, equilibration_steps=20, sample_interval=5),
    ),
}


def calculator_version() -> str:
    """The labelling method and the ASE version, as recorded in the manifest."""
    return f"EMT (ase {ase.__version__})"


def generate(plan: Cu3AuPlan, seed: int, progress: Callable[[str], None]) -> GeneratedSets:
    """All data sets of "cu3au-emt" for ``plan``, reproducible from ``seed``."""
    n_elemental = len(METALS) * len(LATTICES) * plan.pretrain_per_lattice
    progress(f"pretrain cells ({n_elemental} elemental, {plan.pretrain_alloys} alloys)")
    pretrain = elemental_cells(plan.pretrain_per_lattice, stream_rng(seed, "pretrain_elemental"))
    pretrain += alloy_cells(plan.pretrain_alloys, stream_rng(seed, "pretrain_alloy"))
    cell = cu3au_supercell()
    progress(f"train MD ({plan.train_samples} samples at {TRAIN_TEMPERATURE_K:.0f} K)")
    train = _md(cell, TRAIN_TEMPERATURE_K, plan.train_samples, plan, seed, "train")
    tests = {}
    for test_name, temperature_K in TEST_TEMPERATURES_K.items():
        progress(f"test MD {test_name} ({plan.test_samples} samples)")
        tests[test_name] = _md(cell, temperature_K, plan.test_samples, plan, seed, f"test_{test_name}")
    progress(f"slab and vacancy tests ({plan.test_samples} samples each)")
    tests["slab"] = rattled_slabs(plan.test_samples, stream_rng(seed, "slab"))
    tests["vacancy"] = _md(without_one_cu(cell), TRAIN_TEMPERATURE_K, plan.test_samples, plan, seed, "vacancy")
    e0s = [isolated_atom(symbol) for symbol in METALS]
    return GeneratedSets(pretrain=pretrain, train=train, tests=tests, e0s=e0s)


def emt_labelled(atoms: Atoms, config_type: str, **info) -> Atoms:
    """``atoms`` labelled by EMT with energy, forces and stress."""
    atoms.calc = EMT()
    return labelled(atoms, config_type, with_stress=True, **info)


def atomic_volume(symbol: str) -> float:
    """Volume per atom (A^3) of the metal's experimental fcc lattice (``ase.data.reference_states``)."""
    return reference_states[atomic_numbers[symbol]]["a"] ** 3 / 4.0


def lattice_cell(symbol: str, lattice: str, volume: float) -> Atoms:
    """Conventional cell of ``lattice`` (fcc cubic, bcc cubic, ideal hcp) with ``volume`` A^3 per atom."""
    if lattice == "fcc":
        return bulk(symbol, "fcc", a=(4.0 * volume) ** (1 / 3), cubic=True)
    if lattice == "bcc":
        return bulk(symbol, "bcc", a=(2.0 * volume) ** (1 / 3), cubic=True)
    a = (2.0 * volume / (np.sqrt(3.0) / 2.0 * IDEAL_C_OVER_A)) ** (1 / 3)
    return bulk(symbol, "hcp", a=a, c=IDEAL_C_OVER_A * a)


def strained_and_rattled(atoms: Atoms, rng: np.random.Generator) -> Atoms:
    """``atoms`` under a random symmetric strain (components in +-3 %) and a random Gaussian rattle."""
    strain = rng.uniform(-MAX_STRAIN, MAX_STRAIN, size=(3, 3))
    strain = (strain + strain.T) / 2.0
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    atoms.positions += rng.normal(0.0, rng.uniform(*RATTLE_RANGE_A), size=atoms.positions.shape)
    return atoms


def elemental_cells(per_lattice: int, rng: np.random.Generator) -> list[Atoms]:
    """``per_lattice`` strained, rattled cells for every (metal, lattice) pair, labelled by EMT."""
    configs = []
    for symbol in METALS:
        for lattice in LATTICES:
            for _ in range(per_lattice):
                repeat = REPEATS[lattice][rng.integers(len(REPEATS[lattice]))]
                cell = lattice_cell(symbol, lattice, atomic_volume(symbol)).repeat(repeat)
                configs.append(emt_labelled(strained_and_rattled(cell, rng), f"pretrain_{lattice}"))
    return configs


def alloy_cells(count: int, rng: np.random.Generator) -> list[Atoms]:
    """``count`` random binary fcc alloys of two distinct metals at a random composition, labelled by EMT."""
    return [emt_labelled(_random_alloy(rng), "pretrain_alloy") for _ in range(count)]


def _random_alloy(rng: np.random.Generator) -> Atoms:
    first, second = rng.choice(METALS, size=2, replace=False)
    repeat = REPEATS["fcc"][rng.integers(len(REPEATS["fcc"]))]
    n_atoms = 4 * int(np.prod(repeat))
    symbols = np.where(rng.random(n_atoms) < rng.uniform(0.1, 0.9), first, second)
    volume = float(np.mean([atomic_volume(symbol) for symbol in symbols]))
    cell = lattice_cell(str(first), "fcc", volume).repeat(repeat)
    cell.set_chemical_symbols(symbols.tolist())
    return strained_and_rattled(cell, rng)


def cu3au_supercell() -> Atoms:
    """Ordered L1_2 Cu3Au, 2x2x2 cubic cells (32 atoms), at the lattice constant where EMT's pressure vanishes."""
    unit = l12_cu3au_cell((3 * atomic_volume("Cu") + atomic_volume("Au")) ** (1 / 3))  # Vegard's law
    unit.calc = EMT()
    BFGS(FrechetCellFilter(unit, hydrostatic_strain=True), logfile=None).run(fmax=1e-4, steps=100)
    return l12_cu3au_cell(float(np.mean(unit.cell.lengths()))).repeat(2)


def l12_cu3au_cell(a: float) -> Atoms:
    """The cubic 4-atom L1_2 Cu3Au cell of edge ``a`` (A): Au on the corner, Cu on the face centres."""
    return Atoms(
        "AuCu3",
        scaled_positions=[(0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)],
        cell=[a] * 3,
        pbc=True,
    )


def without_one_cu(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` with its first Cu atom removed (a vacancy)."""
    vacancy = atoms.copy()
    del vacancy[vacancy.get_chemical_symbols().index("Cu")]
    return vacancy


def _md(cell: Atoms, temperature_K: float, n_samples: int, plan: Cu3AuPlan, seed: int, config_type: str) -> list[Atoms]:
    atoms = cell.copy()
    atoms.calc = EMT()
    rng = stream_rng(seed, config_type)
    return sample_langevin(atoms, temperature_K, n_samples, plan.target_md, rng, config_type, with_stress=True)


def rattled_slabs(count: int, rng: np.random.Generator) -> list[Atoms]:
    """``count`` rattled Cu(111) slabs (3x3x4, vacuum on both sides, pbc on all axes), labelled by EMT."""
    slab = fcc111("Cu", size=(3, 3, 4), a=(4.0 * atomic_volume("Cu")) ** (1 / 3), vacuum=SLAB_VACUUM_A)
    slab.pbc = True
    configs = []
    for _ in range(count):
        rattled = slab.copy()
        rattled.positions += rng.normal(0.0, rng.uniform(*RATTLE_RANGE_A), size=rattled.positions.shape)
        configs.append(emt_labelled(rattled, "slab"))
    return configs


def isolated_atom(symbol: str) -> Atoms:
    """One atom alone in a 20 A box without periodicity, with its EMT energy, ``config_type="IsolatedAtom"``."""
    atom = Atoms(symbol, cell=[ISOLATED_BOX_A] * 3, pbc=False)
    atom.calc = EMT()
    return labelled(atom, "IsolatedAtom")
