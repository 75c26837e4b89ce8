"""The paper's remaining physical checks on known answers: EMT copper's phonon dispersion against
ASE's own phonon code, an fcc stacking-fault energy path against a slab built by hand from ASE's
fcc111, the diffusion coefficient of a planted random walk, the partial g(r) and bond angles of an
ideal L1_2 lattice, a planted temperature drift, and the evaluators end to end on Cu3Au with EMT."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.constraints import FixCartesian
from ase.optimize import BFGS
from ase.phonons import Phonons

from trainables.embedded import emt as embedded_emt
from trainables.errors import ConfigError
from trainables.properties import OK, SKIPPED, UNSTABLE, PropertySettings, PropertyStructures, compute_references
from trainables.properties import evaluate_properties
from trainables.properties.base import attached
from trainables.properties.dispersion import band_path, compare_dispersion
from trainables.properties.liquid import (
    ANGLE_BINS, bond_angle_histogram, einstein_diffusion, partial_rdfs, reference_from_trajectory, self_diffusion,
    temperature_drift_and_fluctuation,
)
from trainables.properties.elastic import equation_of_state
from trainables.properties.phonons import phonopy_frequencies_thz
from trainables.properties.stacking_fault import EV_PER_A2_TO_J_PER_M2, in_plane_vectors, measure_stacking_fault

EV_PER_THZ = 4.135667696e-3  # h in eV / THz


def by_property(rows):
    return {row["property"]: row for row in rows}


def cu3au_structures() -> PropertyStructures:
    supercell = embedded_emt.cu3au_supercell()
    unit_cell = embedded_emt.l12_cu3au_cell(supercell.cell.lengths()[0] / 2)
    return PropertyStructures(minimum=supercell, cubic_cell=unit_cell)


def test_emt_copper_dispersion_by_phonopy_matches_ases_phonons():
    copper = bulk("Cu", "fcc", a=3.6)  # the primitive cell
    qpoints, path = band_path(copper, 40)
    assert path == "GXWKGLUWLK,UX" and qpoints.shape == (40, 3)  # fcc's path (Setyawan & Curtarolo)
    # Gamma, X, W, L and halfway to X and L: commensurate with the 4x4x4 supercell, where the two codes'
    # different ways of sharing force constants among periodic images agree exactly
    commensurate = np.array([[0, 0, 0], [0.5, 0, 0.5], [0.5, 0.25, 0.75], [0.5, 0.5, 0.5], [0.25, 0, 0.25],
                             [0.25, 0.25, 0.25]])
    ours = phonopy_frequencies_thz(copper, EMT(), 4, 0.01, commensurate)
    with tempfile.TemporaryDirectory() as folder:
        phonons = Phonons(copper, EMT(), supercell=(4, 4, 4), delta=0.01, name=str(Path(folder) / "ph"))
        phonons.run()
        phonons.read(acoustic=False)
        ases = np.sort(phonons.band_structure(commensurate).real / EV_PER_THZ, axis=1)
    assert ours.max() > 5.0  # THz: EMT copper's top branch, near 7 THz at X
    np.testing.assert_allclose(ours, ases, atol=1e-3)


def test_the_dispersion_error_says_where_it_is_largest():
    reference = {"path": "GX", "qpoints": [[0, 0, 0], [0.5, 0, 0]], "frequencies_thz": [[0, 0, 0], [3, 3, 6]]}
    measured = {**reference, "frequencies_thz": [[0, 0, 0], [3, 3.2, 5.6]]}
    rows = compare_dispersion(measured, reference)
    assert rows["dispersion_mae"].value == pytest.approx(0.6 / 6)
    assert rows["dispersion_max_error"].value == pytest.approx(0.4)
    assert rows["dispersion_max_error"].note == "at q = [0.5, 0.0, 0.0] (point 1 of path GX), branch 2"


def hand_built_gsfe(a: float, fractions: list[float], layers: int) -> list[float]:
    """gamma (J/m^2) of copper by EMT on ASE's fcc111 slab, the upper half shifted by s times the
    partial that takes one layer's sites to the next one's, relaxed along z only."""
    slab = fcc111("Cu", size=(1, 1, layers), a=a, vacuum=5.0, orthogonal=False)
    order = np.argsort(slab.positions[:, 2])
    partial = (slab.positions[order[1]] - slab.positions[order[0]]) * (1, 1, 0)
    upper = order[layers // 2:]
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    energies = []
    for s in fractions:
        faulted = slab.copy()
        faulted.positions[upper] += s * partial
        faulted.set_constraint(FixCartesian(range(len(faulted)), mask=(True, True, False)))
        faulted.calc = EMT()
        BFGS(faulted, logfile=None).run(fmax=0.001, steps=200)
        energies.append(faulted.get_potential_energy())
    return [(e - energies[0]) / area * EV_PER_A2_TO_J_PER_M2 for e in energies]


def test_emt_copper_gsfe_from_the_cubic_cell_matches_a_slab_built_by_hand():
    settings = PropertySettings(gsfe_points=3, relax_fmax_eV_A=0.001)  # s = 0, 1/2, 1 along 1/6[11-2] on (111)
    cell = bulk("Cu", "fcc", a=3.6, cubic=True)
    measured = measure_stacking_fault(EMT(), cell, settings)
    edge, _ = equation_of_state(attached(cell, EMT()), settings)  # the evaluator's slab has EMT's own edge
    expected = hand_built_gsfe(edge, [0.0, 0.5, 1.0], settings.gsfe_layers)
    np.testing.assert_allclose(measured["gsfe_j_m2"], expected, atol=2e-3)
    unstable, intrinsic = expected[1], expected[2]
    assert unstable > 0.1 > abs(intrinsic)  # J/m^2: the unstable fault halfway; EMT's intrinsic one near zero


def test_in_plane_vectors_span_the_planes_primitive_cell():
    for plane in ((1, 1, 1), (1, 1, 0), (1, 1, 2), (0, 0, 1)):
        first, second = in_plane_vectors(plane)
        assert first @ plane == second @ plane == 0
        assert np.cross(first, second) @ plane == pytest.approx(np.linalg.norm(plane) ** 2)  # right-handed, primitive


def test_a_planted_random_walk_gives_its_diffusion_coefficient():
    rng = np.random.default_rng(0)
    step_A, interval_ps, box_A = 0.05, 0.01, 12.0  # D = step^2 / (2 interval) per axis
    walk = np.cumsum(rng.normal(0.0, step_A, (400, 300, 3)), axis=0)
    frames = [Atoms("Ar300", positions=positions, cell=[box_A] * 3, pbc=True) for positions in walk]
    for frame in frames:
        frame.wrap()  # as a trajectory file may store them: the walkers cross the cell's faces
    expected = step_A ** 2 / (2 * interval_ps)
    assert self_diffusion(frames, interval_ps, (0.1, 0.5)) == pytest.approx(expected, rel=0.05)


def coordination(frames, pair: str, upto_A: float) -> float:
    """The number of the second element's atoms within `upto_A` of one of the first element's."""
    r, rdfs = partial_rdfs(frames, 6.0, 600)
    symbols = frames[0].get_chemical_symbols()
    density = symbols.count(pair.split("-")[1]) / frames[0].get_volume()
    half_bin = (r[1] - r[0]) / 2
    shells = 4 / 3 * np.pi * ((r + half_bin) ** 3 - (r - half_bin) ** 3)
    return float(density * np.sum((rdfs[pair] * shells)[r < upto_A]))


def test_the_ideal_l12_lattice_has_its_shells_in_the_partial_rdfs():
    cell = cu3au_structures().minimum  # 2x2x2 L1_2: Cu has 8 Cu and 4 Au neighbours, Au 12 Cu and no Au
    a = cell.cell.lengths()[0] / 2
    shell = (a / np.sqrt(2) + a) / 2
    assert coordination([cell], "Cu-Cu", shell) == pytest.approx(8.0)
    assert coordination([cell], "Au-Cu", shell) == pytest.approx(12.0)  # around an Au
    assert coordination([cell], "Au-Au", shell) == 0.0
    _, rdfs = partial_rdfs([cell], 6.0, 600)
    assert set(rdfs) == {"Au-Au", "Au-Cu", "Cu-Cu"}
    r, _ = partial_rdfs([cell], 6.0, 600)
    assert r[int(np.argmax(rdfs["Cu-Cu"]))] == pytest.approx(a / np.sqrt(2), abs=0.01)


def test_the_ideal_fcc_lattice_has_its_bond_angles():
    counts = bond_angle_histogram([bulk("Cu", "fcc", a=3.6, cubic=True)])
    centres = (ANGLE_BINS[:-1] + ANGLE_BINS[1:]) / 2
    found = {round(float(c)): n / 4 for c, n in zip(centres, counts) if n}  # per atom of the 4
    assert found == {60: 24, 90: 12, 120: 24, 180: 6}  # 12 first neighbours: 66 pairs


def test_a_planted_drift_is_told_apart_from_the_fluctuation():
    rng = np.random.default_rng(1)
    times = np.arange(2000) * 0.01
    noise = rng.normal(0.0, 20.0, times.size)
    drift, fluctuation = temperature_drift_and_fluctuation(1000.0 + 50.0 * times + noise, 0.01)
    assert drift == pytest.approx(50.0, rel=0.05) and fluctuation == pytest.approx(20.0, rel=0.05)


SMALL = dict(evaluators=("dispersion", "stacking_fault", "liquid"), dispersion_q_points=20, phonon_supercell=2,
             gsfe_points=3, gsfe_layers=6, liquid_steps=60, md_sample_every=5)


def test_cu3au_against_emt_itself_gives_zero_errors_and_a_skip_on_a_molecule():
    settings = PropertySettings(**SMALL)
    structures = cu3au_structures()
    references = compute_references(EMT(), structures, settings)
    assert set(references) == {"dispersion", "stacking_fault", "liquid"}
    rows = by_property(evaluate_properties(EMT(), structures, references, settings))
    assert {row["status"] for row in rows.values()} == {OK}
    for prop in ("dispersion_mae", "gsfe_rmse", "unstable_stacking_fault", "liquid_rdf_rmse", "self_diffusion",
                 "bond_angle_w1", "temperature_drift", "temperature_fluctuation"):
        assert rows[prop]["error"] == pytest.approx(0.0, abs=1e-9), prop
    assert rows["unstable_stacking_fault"]["value"] > 0.1  # J/m^2
    note = rows["self_diffusion"]["note"]
    assert "Nose-Hoover" in note and "MSD fit over lags 0.1-0.5" in note  # the thermostat and the fit window
    rows = evaluate_properties(EMT(), PropertyStructures(minimum=molecule("H2O"), cubic_cell=molecule("H2O")), None,
                               settings)
    assert {row["status"] for row in rows} == {SKIPPED}
    assert {row["note"] for row in rows if row["evaluator"] == "liquid"} == {
        "needs a cell periodic on all axes; the minimum is not"}


def test_a_reference_trajectory_gives_the_liquid_structure_only():
    settings = PropertySettings(**SMALL)
    cell = cu3au_structures().minimum
    trajectory = [cell.copy() for _ in range(5)]
    for seed, frame in enumerate(trajectory):
        frame.rattle(0.1, seed=seed)
    references = {"liquid": reference_from_trajectory(trajectory, settings)}
    rows = by_property(evaluate_properties(EMT(), PropertyStructures(minimum=cell), references, settings))
    assert rows["liquid_rdf_rmse"]["value"] > 0 and rows["bond_angle_w1"]["value"] > 0
    assert rows["self_diffusion"]["reference"] is None
    assert rows["self_diffusion"]["note"].startswith("the reference trajectory has no self diffusion")


class NotANumber(Calculator):
    """A broken model: no finite energy, zero forces."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": float("nan"), "forces": np.zeros((len(atoms), 3))}


def test_a_broken_model_makes_the_liquid_run_unstable():
    rows = evaluate_properties(NotANumber(), PropertyStructures(minimum=cu3au_structures().minimum), None,
                               PropertySettings(**{**SMALL, "evaluators": ("liquid",)}))
    assert {row["status"] for row in rows} == {UNSTABLE}
    assert all(row["value"] is None and row["note"].startswith("non-finite energy or positions at step 0")
               for row in rows)


def test_bad_path_and_window_settings_say_what_is_wrong():
    with pytest.raises(ConfigError, match=r"gsfe_shift \(1, 0, 0\) is not in gsfe_plane \(1, 1, 1\)"):
        PropertySettings.from_dict({"gsfe_shift": [1, 0, 0]})
    with pytest.raises(ConfigError, match="gsfe_plane must be three integers, not all zero, got \\(0, 0, 0\\)"):
        PropertySettings.from_dict({"gsfe_plane": [0, 0, 0]})
    with pytest.raises(ConfigError, match="msd_fit_start < msd_fit_end <= 1, got 0.5, 0.2"):
        PropertySettings.from_dict({"msd_fit_start": 0.5, "msd_fit_end": 0.2})
    with pytest.raises(ConfigError, match="the liquid MD samples 4 frames .* it needs 10 or more"):
        PropertySettings.from_dict({"liquid_steps": 40})
    with pytest.raises(ConfigError, match="the MSD fit window .* holds fewer than two of the 12 lags"):
        einstein_diffusion(np.arange(12.0), 0.01, (0.01, 0.05))
    settings = PropertySettings.from_dict({"gsfe_plane": [1, 1, 0], "gsfe_shift": [0.5, -0.5, 0]})
    assert settings.gsfe_plane == (1, 1, 0) and settings.to_dict()["gsfe_shift"] == [0.5, -0.5, 0]
