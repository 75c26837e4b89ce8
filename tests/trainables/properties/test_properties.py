"""The property evaluators on known answers: a Morse diatomic's harmonic frequency, EMT copper's
equation of state and elastic constants against direct scans, clamped-ion constants of a cell whose
strained atoms feel forces, MD against the labeller's own MD, a broken calculator's MD, inputs an
evaluator cannot take, and a real small MACE model through mace's ASE calculator. Frequencies
(the Eckart projection, acoustic phonons) are in test_frequencies.py."""

import math
import re

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.morse import MorsePotential
from ase.calculators.singlepoint import SinglePointCalculator

from trainables.errors import ConfigError
from trainables.properties import (
    EVALUATORS,
    FAILED,
    OK,
    ROW_KEYS,
    SKIPPED,
    UNSTABLE,
    PropertySettings,
    PropertyStructures,
    compute_references,
    embedded_properties,
    embedded_references,
    embedded_structures,
    evaluate_properties,
    mace_calculator,
    md_reference_from_trajectory,
    profile_reference_from_labels,
    settings_from_dict,
)
from trainables.properties.elastic import strained

MORSE = {"epsilon": 2.0, "rho0": 3.0, "r0": 1.1}


def by_property(rows):
    return {row["property"]: row for row in rows}


def morse_frequency_cm1(epsilon: float, rho0: float, r0: float, mass_amu: float) -> float:
    """hbar sqrt(k / mu) in cm^-1 with k = 2 epsilon (rho0 / r0)^2 (ASE's MorsePotential docstring)."""
    k_si = 2 * epsilon * (rho0 / r0) ** 2 * units._e / 1e-20  # eV/A^2 -> J/m^2
    omega = math.sqrt(k_si / (mass_amu / 2 * units._amu))
    return units._hbar * omega / units._e / units.invcm


def test_morse_diatomic_frequency_is_the_analytic_one():
    dimer = Atoms("N2", positions=[(0, 0, 0), (0, 0, 1.05 * MORSE["r0"])])  # relaxed first
    analytic = morse_frequency_cm1(**MORSE, mass_amu=dimer.get_masses()[0])
    settings = PropertySettings(evaluators=("vibrations",), relax_fmax_eV_A=1e-4)
    rows = evaluate_properties(MorsePotential(**MORSE), PropertyStructures(minimum=dimer),
                               {"vibrations": {"frequencies_cm1": [analytic]}}, settings)
    mae = by_property(rows)["vib_frequency_mae"]
    assert mae["status"] == OK and mae["unit"] == "cm^-1"
    assert mae["value"] < 1e-3 * analytic  # ~2000 cm^-1; finite differences of 0.01 A
    assert [list(row) for row in rows] == [list(ROW_KEYS)] * 2


def direct_scan(cell: Atoms) -> tuple[float, float]:
    """(lattice constant A, bulk modulus GPa) of EMT `cell` from a fine scan: a quartic E(V) fit."""
    edges = np.linspace(0.99, 1.01, 41) * cell.cell.lengths()[0]
    volumes = edges ** 3 * cell.get_volume() / cell.cell.lengths()[0] ** 3
    energies = [strained(with_emt(cell), (edge / cell.cell.lengths()[0] - 1) * np.eye(3)).get_potential_energy()
                for edge in edges]
    fit = np.polynomial.Polynomial.fit(volumes, energies, 4)
    v0 = min((r.real for r in fit.deriv().roots() if abs(r.imag) < 1e-9 and volumes[0] < r.real < volumes[-1]))
    return float(edges[0] * (v0 / volumes[0]) ** (1 / 3)), float(v0 * fit.deriv(2)(v0) / units.GPa)


def with_emt(atoms: Atoms) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = EMT()
    return atoms


def energy_curvature_gpa(cell: Atoms, direction: np.ndarray) -> float:
    """d2E/dx2 / V for the strain x * direction, by a 5-point stencil on energies (not stresses)."""
    h = 1e-3
    energies = [strained(with_emt(cell), x * direction).get_potential_energy() for x in (-2 * h, -h, 0, h, 2 * h)]
    second = (-energies[0] + 16 * energies[1] - 30 * energies[2] + 16 * energies[3] - energies[4]) / (12 * h * h)
    return second / cell.get_volume() / units.GPa


def test_emt_copper_elastic_matches_direct_scans():
    copper = bulk("Cu", "fcc", a=3.6, cubic=True)
    rows = by_property(evaluate_properties(EMT(), PropertyStructures(cubic_cell=copper), None,
                                           PropertySettings(evaluators=("elastic",))))
    lattice_constant, bulk_modulus = direct_scan(copper)
    assert rows["lattice_constant"]["value"] == pytest.approx(lattice_constant, rel=1e-3)
    assert rows["bulk_modulus"]["value"] == pytest.approx(bulk_modulus, rel=0.01)
    assert rows["lattice_constant"]["note"] == "no reference" and rows["c11"]["status"] == OK
    at_minimum = strained(copper, (lattice_constant / 3.6 - 1) * np.eye(3))
    axial, shear = np.diag([1.0, 0, 0]), np.array([[0, 0, 0], [0, 0, 0.5], [0, 0.5, 0]])
    assert rows["c11"]["value"] == pytest.approx(energy_curvature_gpa(at_minimum, axial), rel=0.01)
    assert rows["c44"]["value"] == pytest.approx(energy_curvature_gpa(at_minimum, shear), rel=0.01)
    cubic_bulk_modulus = (rows["c11"]["value"] + 2 * rows["c12"]["value"]) / 3
    assert cubic_bulk_modulus == pytest.approx(bulk_modulus, rel=0.01)
    # Poisson's ratio under uniaxial stress: the lateral strain that leaves sigma_yy = C12 e_xx + (C11 + C12) e_yy = 0
    lateral = -rows["c12"]["value"] / (rows["c11"]["value"] + rows["c12"]["value"])
    assert rows["poisson_ratio"]["value"] == pytest.approx(-lateral) and rows["poisson_ratio"]["unit"] == "1"
    assert "clamped-ion" not in rows["c44"]["note"]  # fcc: every atom a centre of inversion


def test_clamped_ion_constants_of_a_cell_whose_strained_atoms_feel_forces_say_so():
    diamond = bulk("Cu", "diamond", a=5.53, cubic=True)  # EMT's diamond-lattice copper near its minimum
    settings = PropertySettings(evaluators=("elastic",), elastic_max_residual_force_eV_A=1e-3)
    rows = by_property(evaluate_properties(EMT(), PropertyStructures(cubic_cell=diamond), None, settings))
    assert rows["c44"]["status"] == OK and rows["c44"]["value"] is not None
    found = re.search(r"clamped-ion: atoms of the shear-strained cell feel up to (\S+) eV/A \(threshold 0.001\)",
                      rows["c44"]["note"])
    at_minimum = strained(diamond, (rows["lattice_constant"]["value"] / 5.53 - 1) * np.eye(3))
    sheared = strained(with_emt(at_minimum), np.array([[0, 0, 0], [0, 0, 0.0025], [0, 0.0025, 0]]))
    assert found and float(found[1]) == pytest.approx(np.linalg.norm(sheared.get_forces(), axis=1).max(), rel=0.01)
    assert "clamped-ion" not in rows["c11"]["note"]  # an axial strain leaves diamond's atoms at rest


def test_a_reference_gives_errors_and_emt_phonons_keep_the_sum_rule():
    copper = bulk("Cu", "fcc", a=3.6, cubic=True)
    structures = PropertyStructures(minimum=copper.repeat((2, 1, 1)), cubic_cell=copper)
    settings = PropertySettings(evaluators=("phonons_gamma", "elastic"))
    references = compute_references(EMT(), structures, settings)
    rows = by_property(evaluate_properties(EMT(), structures, references, settings))
    assert rows["phonon_acoustic_sum_rule"]["value"] < 0.1  # cm^-1: EMT's forces sum to zero
    assert rows["phonon_acoustic_sum_rule"]["ranked"] is False and rows["phonon_gamma_mae"]["ranked"] is True
    for prop in ("phonon_gamma_mae", "lattice_constant", "bulk_modulus", "c11", "c12", "c44"):
        assert rows[prop]["status"] == OK and abs(rows[prop]["error"]) < 1e-6, prop


def test_embedded_cu3au_against_its_labeller(tmp_path):
    from trainables.embedded import get_system, system_files

    files = system_files(get_system("cu3au-emt"), "smoke", tmp_path)  # the layout; no file is read here
    settings = PropertySettings(evaluators=("md", "acoustic_phonons", "elastic"), md_steps=20, md_sample_every=5,
                                phonon_supercell=2)
    structures = embedded_structures(files)
    assert len(structures.minimum) == 32 and len(structures.cubic_cell) == 4
    references = embedded_references(files, structures, settings)
    assert set(references) == {"md", "acoustic_phonons", "elastic"}  # every one the labeller's
    rows = by_property(evaluate_properties(EMT(), structures, references, settings))
    assert rows["lattice_constant"]["value"] == pytest.approx(structures.cubic_cell.cell.lengths()[0], rel=1e-4)
    assert all(row["status"] == OK and abs(row["error"]) < 1e-6 for row in rows.values())
    with pytest.raises(ConfigError, match="no property evaluation for system 'h2o'; known: biphenyl-xtb, cu3au-emt"):
        embedded_properties("h2o")


class RandomForces(Calculator):
    """A broken model: zero energy, fixed random forces of ~100 eV/A on every atom."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        forces = 100.0 * np.random.default_rng(0).standard_normal((len(atoms), 3))
        self.results = {"energy": 0.0, "forces": forces}


def test_a_broken_model_fails_the_md_check_as_unstable():
    settings = PropertySettings(evaluators=("md",), md_steps=200)
    rows = by_property(evaluate_properties(RandomForces(), PropertyStructures(minimum=molecule("H2O")), None, settings))
    survival = rows["md_survival_time"]
    assert survival["status"] == UNSTABLE and "stretched" in survival["note"]
    assert survival["value"] < survival["reference"] == pytest.approx(0.1)
    for prop in ("md_temperature", "md_bond_length_w1"):  # nothing from the frames before the failure
        assert rows[prop]["status"] == UNSTABLE and rows[prop]["value"] is None and rows[prop]["error"] is None


def test_md_is_compared_with_the_labellers_own_md_under_the_same_protocol():
    cell = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    settings = PropertySettings(evaluators=("md",), md_steps=100, md_timestep_fs=1.0, md_sample_every=5)
    references = compute_references(EMT(), PropertyStructures(minimum=cell), settings)
    rows = by_property(evaluate_properties(EMT(), PropertyStructures(minimum=cell), references, settings))
    temperature = rows["md_temperature"]
    # 0.1 ps at 0.01/fs: the thermostat has not reached 300 K, on either side; the model is not to blame
    assert temperature["value"] < 250.0 and temperature["error"] == pytest.approx(0.0, abs=1e-9)
    assert rows["md_bond_length_w1"]["value"] == pytest.approx(0.0, abs=1e-12)
    rattled = cell.copy()
    rattled.rattle(0.05, seed=1)  # another start: another run, another temperature
    other = by_property(evaluate_properties(EMT(), PropertyStructures(minimum=rattled), references, settings))
    assert other["md_temperature"]["reference"] == temperature["reference"] != other["md_temperature"]["value"]


def test_emt_md_survives_and_compares_bond_lengths_with_a_reference_trajectory():
    cell = bulk("Cu", "fcc", a=3.6, cubic=True)
    settings = PropertySettings(evaluators=("md",), md_steps=20, md_timestep_fs=2.0, md_sample_every=5)
    trajectory = [strained(cell, np.eye(3) * s) for s in (-0.01, 0.0, 0.01)]
    references = {"md": md_reference_from_trajectory(trajectory, cell)}
    rows = by_property(evaluate_properties(EMT(), PropertyStructures(minimum=cell), references, settings))
    assert rows["md_survival_time"]["status"] == OK and rows["md_survival_time"]["error"] == 0.0
    assert 0.0 < rows["md_bond_length_w1"]["value"] < 0.1  # A
    temperature = rows["md_temperature"]  # a trajectory has no temperature under this protocol
    assert temperature["value"] > 0 and temperature["reference"] is None
    assert "target is not a reference" in temperature["note"]


def test_energy_profile_errors_by_hand():
    frames = [Atoms("Cu2", positions=[(0, 0, 0), (0, 0, d)]) for d in (2.2, 2.4, 2.6)]  # EMT: rising energies
    model = [with_emt(frame).get_potential_energy() for frame in frames]
    for frame, energy, shift in zip(frames, model, (0.0, 0.03, 0.0)):  # reference: the middle one 30 meV higher
        frame.calc = SinglePointCalculator(frame, energy=energy + shift)
    rows = by_property(evaluate_properties(EMT(), PropertyStructures(profile=tuple(frames)),
                                           {"energy_profile": profile_reference_from_labels(frames)},
                                           PropertySettings(evaluators=("energy_profile",))))
    assert rows["profile_rel_energy_max_error"]["value"] == pytest.approx(30.0)
    assert rows["profile_rel_energy_rmse"]["value"] == pytest.approx(30.0 / math.sqrt(3))
    barrier = rows["profile_barrier"]
    assert barrier["value"] == pytest.approx(1000 * (model[2] - model[0])) and barrier["error"] == pytest.approx(0.0)


def test_inputs_an_evaluator_cannot_take_are_skipped_with_a_note():
    water, copper = molecule("H2O"), bulk("Cu", cubic=True)
    rows = evaluate_properties(EMT(), PropertyStructures(minimum=copper, cubic_cell=water), None,
                               PropertySettings(evaluators=("elastic", "vibrations", "energy_profile")))
    notes = {row["evaluator"]: row["note"] for row in rows if row["status"] == SKIPPED}
    assert notes == {"elastic": "needs a cell periodic on all axes; the cubic_cell is not",
                     "vibrations": "needs a molecule (no periodic axis); the minimum is periodic",
                     "energy_profile": "no profile structures (2 or more) given"}
    rows = evaluate_properties(EMT(), PropertyStructures(cubic_cell=bulk("Cu", "fcc", a=3.6, orthorhombic=True)),
                               None, PropertySettings(evaluators=("elastic",)))
    assert rows[0]["status"] == SKIPPED and rows[0]["note"].startswith("needs a cubic cell")
    rows = evaluate_properties(EMT(), PropertyStructures(minimum=water), None,
                               PropertySettings(evaluators=("vibrations",)))
    assert {row["note"] for row in rows} == {"no reference given"}


def test_a_relaxation_the_model_cannot_finish_is_failed():
    settings = PropertySettings(evaluators=("vibrations",), relax_steps=1)
    rows = evaluate_properties(EMT(), PropertyStructures(minimum=molecule("H2O")),
                               {"vibrations": {"frequencies_cm1": []}}, settings)
    assert {row["status"] for row in rows} == {FAILED}
    assert rows[0]["note"].startswith("EvaluationFailed: relaxation not converged in 1 steps")


def test_bad_settings_name_what_is_known():
    with pytest.raises(ConfigError, match="unknown property evaluator 'phonopy'; known: md, vibrations"):
        settings_from_dict({"evaluators": ["md", "phonopy"]})
    with pytest.raises(ConfigError, match=r"unknown property setting\(s\) \['md_temp'\]"):
        PropertySettings.from_dict({"md_temp": 300})
    with pytest.raises(ConfigError, match="md_steps must be positive, got 0"):
        PropertySettings.from_dict({"md_steps": 0})
    with pytest.raises(ConfigError, match="md_steps must be an integer, got 2.5"):
        PropertySettings.from_dict({"md_steps": 2.5})
    assert PropertySettings.from_dict(PropertySettings().to_dict()) == PropertySettings()
    # the defaults run every check of a structure (not those of the run itself, such as its spectrum)
    assert set(PropertySettings().evaluators) == {name for name, spec in EVALUATORS.items() if spec.needs_structure}


@pytest.fixture(scope="module")
def smoke_model_file(smoke_inputs, tmp_path_factory):
    from trainables.core.foundation import save_model
    from trainables.core.replay import export_task_head
    from trainables.stages.finetune import MODEL_FILE

    return save_model(export_task_head(smoke_inputs.initial_model()), tmp_path_factory.mktemp("run") / MODEL_FILE)


def test_a_small_mace_model_runs_md_and_scaled_up_it_is_unstable(smoke_model_file, smoke_files):
    import ase.io

    frames = ase.io.read(smoke_files.tests["300K"], ":")
    structures = PropertyStructures(minimum=frames[0])
    references = {"md": md_reference_from_trajectory(frames, frames[0])}
    settings = PropertySettings(evaluators=("md",), md_steps=20, md_sample_every=5)
    calculator = mace_calculator(smoke_model_file)
    assert next(calculator.models[0].parameters()).dtype.is_floating_point and calculator.default_dtype == "float64"
    rows = by_property(evaluate_properties(calculator, structures, references, settings))
    assert rows["md_survival_time"]["status"] == OK, rows["md_survival_time"]["note"]
    assert rows["md_bond_length_w1"]["status"] == OK and rows["md_bond_length_w1"]["value"] > 0
    calculator.models[0].scale_shift.scale.mul_(1e4)  # the same model with forces 10^4 times too large
    rows = by_property(evaluate_properties(calculator, structures, references, settings))
    assert rows["md_survival_time"]["status"] == UNSTABLE
    assert rows["md_bond_length_w1"]["value"] is None
