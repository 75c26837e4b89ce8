"""The "biphenyl-xtb" embedded system: GFN2-xTB labels (tblite) for small organic molecules.

Pre-training corpus: Langevin MD at 300 K and 800 K of the closed-shell C/H/N/O molecules of ASE's
G2 collection (``ase.collections.g2``). A molecule is kept when it holds only C, H, N and O, its G2
entry has zero total initial magnetic moment (which drops every radical and triplet, e.g. CH3, OH,
NO, O2, triplet CH2) and it is not one of two singlets with strong diradical character that a
single-reference method describes poorly: ozone (``O3``) and singlet methylene (``CH2_s1A1d``, a
carbene). Cyclopropene (``C3H4_C2v``) is an ordinary closed-shell molecule and stays. That leaves
59 molecules, none with more than six carbons.

Fine-tuning target, held out of the corpus: biphenyl C12H10, built from two benzene rings joined by
a 1.49 A C-C bond at a 40 degree ring-ring dihedral and relaxed with xTB (BFGS, fmax 0.05 eV/A).
Train: 300 K MD. Tests: independent 300 K, 600 K and 1200 K MD trajectories, and a relaxed scan of
the ring-ring dihedral from 0 to 180 degrees: at each angle one ring is rotated rigidly about the
inter-ring bond, then every atom relaxes with the torsion C(ortho)-C(ipso)-C(ipso')-C(ortho')
held by ``ase.constraints.FixInternals``. Angles theta and 180 - theta are the same structure by
ring symmetry, so the scan is its own consistency check.

Isolated-atom energies (H, C, N, O): one atom alone, tblite defaults (no initial magnetic moment,
hence no unpaired-electron constraint; GFN2-xTB is not spin-polarised and uses Fermi smearing at
300 K), as xtb computes its own atomic references.

Threads: tblite runs OpenMP, and on a shared machine with few cores several OpenMP threads were
measured up to 800x slower than one. ``single_threaded_openmp`` therefore forces one OpenMP thread
for the whole build: it sets ``OMP_NUM_THREADS=1`` (read when libgomp is first loaded) and, since
libgomp may already be loaded by torch, also calls ``omp_set_num_threads(1)`` for the calling
thread, restoring the previous value afterwards.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import CalculationFailed
from ase.collections import g2
from ase.constraints import FixInternals
from ase.optimize import BFGS

from trainables.embedded.sampling import GeneratedSets, MDSettings, labelled, sample_langevin, stream_rng

XTB_METHOD = "GFN2-xTB"
PRETRAIN_ELEMENTS = frozenset("CHNO")
DIRADICAL_SINGLETS = frozenset({"O3", "CH2_s1A1d"})
TEST_TEMPERATURES_K = {"300K": 300.0, "600K": 600.0, "1200K": 1200.0}
TEST_NAMES = (*TEST_TEMPERATURES_K, "dihedral")
TRAIN_TEMPERATURE_K = 300.0
E0_ELEMENTS = ("H", "C", "N", "O")
INTER_RING_BOND_A = 1.49
RELAX_FMAX = 0.05
RELAX_MAX_STEPS = 300
# Biphenyl atom order: ring 1 (C0..C5, then its five H), ring 2 the same; C0 of each ring is ipso.
RING_SIZE = 11
DIHEDRAL_ATOMS = (1, 0, RING_SIZE, RING_SIZE + 1)


@dataclass(frozen=True)
class BiphenylPlan:
    """How much data one size of "biphenyl-xtb" generates.

    ``molecules``: G2 names for the corpus, or None for every closed-shell C/H/N/O molecule.
    ``pretrain_samples``: snapshots per molecule and temperature.
    """

    molecules: tuple[str, ...] | None
    pretrain_temperatures_K: tuple[float, ...]
    pretrain_samples: int
    pretrain_md: MDSettings
    train_samples: int
    test_samples: int
    target_md: MDSettings
    dihedral_points: int


PLANS = {
    "full": BiphenylPlan(
        molecules=None,
        pretrain_temperatures_K=(300.0, 800.0),
        pretrain_samples=20,
        pretrain_md=MDSettings(timestep_fs=0.5, friction_per_fs=0.02, equilibration_steps=100, sample_interval=10),
        train_samples=300,
        test_samples=100,
        target_md=MDSettings(timestep_fs=0.5, friction_per_fs=0.02, equilibration_steps=200, sample_interval=20),
        dihedral_points=19,
    ),
    "smoke": BiphenylPlan(
        molecules=("CH4", "H2O", "NH3", "C2H4"),
        pretrain_temperatures_K=(300.0, 800.0),
        pretrain_samples=8,
        pretrain_md=MDSettings(timestep_fs=0.5, friction_per_fs=0.02, equilibration_steps=20, sample_interval=5),
        train_samples=20,
        test_samples=8,
        target_md=MDSettings(timestep_fs=0.5, friction_per_fs=0.02, equilibration_steps=20, sample_interval=5),
        dihedral_points=5,
    ),
}


def calculator_version() -> str:
    """The labelling method and the tblite version, as recorded in the manifest."""
    return f"{XTB_METHOD} (tblite {importlib.metadata.version('tblite')})"


def xtb_calculator():
    """A fresh, silent GFN2-xTB calculator (one per trajectory, so every run starts from the same state)."""
    from tblite.ase import TBLite  # imported here: tblite is optional for the package

    return TBLite(method=XTB_METHOD, verbosity=0)


@contextmanager
def single_threaded_openmp() -> Iterator[None]:
    """Run the block with one OpenMP thread (see the module docstring for why both steps are needed)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        libgomp = ctypes.CDLL("libgomp.so.1")
    except OSError:  # no GNU OpenMP runtime on this platform: the environment variable is all we can set
        yield
        return
    previous = libgomp.omp_get_max_threads()
    libgomp.omp_set_num_threads(1)
    try:
        yield
    finally:
        libgomp.omp_set_num_threads(previous)


def pretrain_molecule_names() -> tuple[str, ...]:
    """G2 names of the closed-shell C/H/N/O molecules of the corpus (rule in the module docstring)."""
    return tuple(name for name in g2.names if _is_closed_shell_chno(name, g2[name]))


def _is_closed_shell_chno(name: str, atoms: Atoms) -> bool:
    return (
        set(atoms.get_chemical_symbols()) <= PRETRAIN_ELEMENTS
        and atoms.get_initial_magnetic_moments().sum() == 0
        and name not in DIRADICAL_SINGLETS
    )


def generate(plan: BiphenylPlan, seed: int, progress: Callable[[str], None]) -> GeneratedSets:
    """All data sets of "biphenyl-xtb" for ``plan``, reproducible from ``seed``.

    Every trajectory and the dihedral scan is one job, and the jobs run in parallel, one process per
    core (the longest, the train MD, first): each job has its own random stream and xTB runs one
    thread, so the sets are the same whatever the number of processes.
    """
    with single_threaded_openmp():
        progress("relaxing biphenyl")
        biphenyl = relaxed(biphenyl_guess()).copy()  # the copy drops the calculator, which is not sent to workers
        target = target_jobs(biphenyl, plan, seed)
        corpus = corpus_jobs(plan, seed)
        with closing(_map_in_processes(_run_job, [job for _, job in target] + [job for _, job in corpus])) as results:
            sets: dict[str, list[Atoms]] = {}
            for index, (name, _) in enumerate(target, start=1):
                sets[name] = next(results)
                progress(f"target set {index}/{len(target)} done: {name} ({len(sets[name])} configurations)")
            pretrain, notes = collect_corpus(corpus, results, progress)
        e0s = [isolated_atom(symbol) for symbol in E0_ELEMENTS]
    tests = {name: sets[name] for name in TEST_NAMES}
    return GeneratedSets(pretrain=pretrain, train=sets["train"], tests=tests, e0s=e0s, notes=notes)


def target_jobs(biphenyl: Atoms, plan: BiphenylPlan, seed: int) -> list[tuple[str, Callable[[], list[Atoms]]]]:
    """(set name, job) for the biphenyl sets: "train" MD, one MD per test temperature, the "dihedral" scan."""
    md_runs = [("train", "train", TRAIN_TEMPERATURE_K, plan.train_samples)]
    md_runs += [(name, f"test_{name}", temperature_K, plan.test_samples) for name, temperature_K in TEST_TEMPERATURES_K.items()]
    jobs = [(name, functools.partial(biphenyl_md, biphenyl, temperature_K, n_samples, plan, seed, config_type))
            for name, config_type, temperature_K, n_samples in md_runs]
    return jobs + [("dihedral", functools.partial(dihedral_scan, biphenyl, plan.dihedral_points))]


def corpus_jobs(plan: BiphenylPlan, seed: int) -> list[tuple[tuple[str, float], Callable]]:
    """((molecule, temperature), job) for every pre-training trajectory."""
    names = plan.molecules if plan.molecules is not None else pretrain_molecule_names()
    runs = [(name, temperature_K) for name in names for temperature_K in plan.pretrain_temperatures_K]
    return [(run, functools.partial(_corpus_job, run, plan, seed)) for run in runs]


def collect_corpus(jobs: list, results: Iterator, progress: Callable[[str], None]) -> tuple[list[Atoms], list[str]]:
    """The corpus from its jobs' results, in job order, and notes on skipped runs.

    A trajectory whose xTB SCF fails is dropped whole (its molecule keeps its other temperatures).
    """
    configs, notes = [], []
    for index, ((name, temperature_K), _) in enumerate(jobs, start=1):
        snapshots, error = next(results)
        progress(f"pretrain MD {index}/{len(jobs)} trajectories ({name}, {temperature_K:.0f} K)")
        configs += snapshots
        if error is not None:
            notes.append(f"skipped {name} at {temperature_K:.0f} K: xTB failed ({error})")
            progress(notes[-1])
    return configs, notes


def _run_job(job: Callable):
    with single_threaded_openmp():
        return job()


def _corpus_job(run: tuple[str, float], plan: BiphenylPlan, seed: int) -> tuple[list[Atoms], str | None]:
    """One corpus trajectory; (snapshots, None), or ([], the reason) when xTB fails."""
    name, temperature_K = run
    try:
        return _molecule_md(name, temperature_K, plan, seed), None
    except CalculationFailed as error:
        return [], str(error)


def _map_in_processes(function: Callable, jobs: list) -> Iterator:
    """`map(function, jobs)` in order, over one process per available core (in this process when one)."""
    workers = min(len(os.sched_getaffinity(0)), len(jobs))
    if workers <= 1:
        yield from map(function, jobs)
        return
    context = multiprocessing.get_context("spawn")  # no fork: torch and OpenMP may be loaded here
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_openmp_thread) as pool:
        yield from pool.map(function, jobs)


def _one_openmp_thread() -> None:
    """A worker's first act, before torch (and with it libgomp) is imported."""
    os.environ["OMP_NUM_THREADS"] = "1"


def _molecule_md(name: str, temperature_K: float, plan: BiphenylPlan, seed: int) -> list[Atoms]:
    atoms = g2[name].copy()
    atoms.calc = xtb_calculator()
    stream = f"pretrain_{name}_{temperature_K:.0f}K"
    return sample_langevin(
        atoms, temperature_K, plan.pretrain_samples, plan.pretrain_md, stream_rng(seed, stream),
        f"pretrain_{temperature_K:.0f}K", molecule=name,
    )


def biphenyl_md(
    biphenyl: Atoms, temperature_K: float, n_samples: int, plan: BiphenylPlan, seed: int, config_type: str
) -> list[Atoms]:
    """``n_samples`` snapshots of a fresh MD run from the relaxed biphenyl, on the stream named ``config_type``."""
    atoms = biphenyl.copy()
    atoms.calc = xtb_calculator()
    rng = stream_rng(seed, config_type)
    return sample_langevin(atoms, temperature_K, n_samples, plan.target_md, rng, config_type)


def biphenyl_guess(dihedral_deg: float = 40.0) -> Atoms:
    """Unrelaxed biphenyl C12H10: two benzene rings, each less one H, bonded ipso to ipso at 1.49 A.

    Benzene from ``ase.build.molecule`` lies in the xy plane with C0 on +y and H6 bonded to it.
    The second ring is the first inverted through its centre and shifted along y, so both ipso
    carbons face each other; it is then turned about the bond to ``dihedral_deg``.
    """
    benzene = molecule("C6H6")
    del benzene[6]
    ring_radius = benzene.positions[0, 1]
    second = benzene.copy()
    second.positions = -second.positions + [0.0, 2 * ring_radius + INTER_RING_BOND_A, 0.0]
    biphenyl = benzene + second
    biphenyl.set_dihedral(*DIHEDRAL_ATOMS, dihedral_deg, indices=range(RING_SIZE, 2 * RING_SIZE))
    return biphenyl


def relaxed(atoms: Atoms) -> Atoms:
    """``atoms`` relaxed with xTB (BFGS to fmax 0.05 eV/A); constraints on ``atoms`` are kept."""
    atoms = atoms.copy()
    atoms.calc = xtb_calculator()
    BFGS(atoms, logfile=None).run(fmax=RELAX_FMAX, steps=RELAX_MAX_STEPS)
    return atoms


def dihedral_scan(biphenyl: Atoms, n_points: int) -> list[Atoms]:
    """Relaxed scan of the ring-ring dihedral over ``n_points`` evenly spaced angles from 0 to 180 degrees."""
    return [_dihedral_point(biphenyl, angle) for angle in np.linspace(0.0, 180.0, n_points)]


def _dihedral_point(biphenyl: Atoms, angle_deg: float) -> Atoms:
    atoms = biphenyl.copy()
    atoms.set_dihedral(*DIHEDRAL_ATOMS, angle_deg, indices=range(RING_SIZE, 2 * RING_SIZE))
    atoms.set_constraint(FixInternals(dihedrals_deg=[[angle_deg, list(DIHEDRAL_ATOMS)]]))
    atoms = relaxed(atoms)
    return labelled(atoms, "dihedral", dihedral_deg=float(angle_deg))


def isolated_atom(symbol: str) -> Atoms:
    """One atom alone with its xTB energy, tagged ``config_type="IsolatedAtom"``."""
    atom = Atoms(symbol)
    atom.calc = xtb_calculator()
    return labelled(atom, "IsolatedAtom")
