"""Bad input gives a specific, actionable error; good input in every common label layout loads."""

import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from trainables.core import data as D
from trainables.core.config import FinetuneConfig
from trainables.core.data import LabelKeys, read_labelled
from trainables.errors import ConfigError, DataError, FoundationError
from trainables.stages.inputs import prepare_inputs


@pytest.fixture()
def structures(smoke_files):
    return ase.io.read(smoke_files.train, ":")[:6]


def _user_config(smoke_files, train, **extra):
    return FinetuneConfig.from_dict({"train_file": str(train), "foundation": smoke_files.foundation,
                                     "e0s_file": str(smoke_files.e0s), "epochs": 1, **extra})


def _write(path, frames):
    ase.io.write(path, frames, format="extxyz")
    return path


def test_mace_style_ref_keys_load(structures, tmp_path):
    for atoms in structures:
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
    items = read_labelled(_write(tmp_path / "ref.xyz", structures))
    assert len(items) == len(structures) and items[0].forces.shape == (len(structures[0]), 3)


def test_missing_forces_names_file_and_key(structures, tmp_path):
    for atoms in structures:
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy())
    path = _write(tmp_path / "noforces.xyz", structures)
    with pytest.raises(DataError, match=r"noforces.xyz \(structure 0\): no forces label \(looked for key REF_forces or forces\)"):
        read_labelled(path)


def test_unknown_key_is_an_error_not_zero_labels(structures, tmp_path):
    path = _write(tmp_path / "train.xyz", structures)
    with pytest.raises(DataError, match="no energy label \\(looked for key DFT_energy\\)"):
        read_labelled(path, LabelKeys(energy="DFT_energy"))


def test_nan_label_is_rejected(structures, tmp_path):
    forces = structures[2].get_forces()
    forces[0, 0] = np.nan
    structures[2].calc = SinglePointCalculator(structures[2], energy=1.0, forces=forces)
    with pytest.raises(DataError, match=r"structure 2\): forces label is not finite"):
        read_labelled(_write(tmp_path / "nan.xyz", structures))


def test_empty_and_missing_and_broken_files(tmp_path):
    (tmp_path / "empty.xyz").write_text("")
    with pytest.raises(DataError, match="empty.xyz"):
        read_labelled(tmp_path / "empty.xyz")
    with pytest.raises(DataError, match="data file not found: .*nothere.xyz"):
        read_labelled(tmp_path / "nothere.xyz")
    (tmp_path / "broken.xyz").write_text("3\nenergy=1.0 Properties=species:S:1:pos:R:3\nH 0 0\n")
    with pytest.raises(DataError, match="cannot read .*broken.xyz"):
        read_labelled(tmp_path / "broken.xyz")


def test_element_missing_from_foundation(smoke_files, structures, tmp_path):
    odd = Atoms("SiH4", positions=np.random.default_rng(0).normal(size=(5, 3)) * 1.5)
    odd.calc = SinglePointCalculator(odd, energy=-1.0, forces=np.zeros((5, 3)))
    path = _write(tmp_path / "si.xyz", structures + [odd])
    with pytest.raises(FoundationError, match="lacks element\\(s\\) Si"):
        prepare_inputs(_user_config(smoke_files, path))


def test_user_files_with_seeded_split(smoke_files, structures, tmp_path):
    path = _write(tmp_path / "train.xyz", structures)
    inputs = prepare_inputs(_user_config(smoke_files, path, test_files={"same": str(path)}))
    assert len(inputs.graphs["train"]) + len(inputs.graphs["val"]) == len(structures)
    assert inputs.test_names == ["same"]


def test_train_file_needs_a_foundation(tmp_path):
    with pytest.raises(ConfigError, match="foundation model"):
        prepare_inputs(FinetuneConfig.from_dict({"train_file": str(tmp_path / "x.xyz")}))


@pytest.mark.parametrize("values, message", [
    ({"lr": -1e-3}, "lr must be positive"),
    ({"optimzer": "adam"}, "unknown config key 'optimzer' \\(did you mean 'optimizer'\\?\\)"),
    ({"dtype": "float16"}, "dtype must be one of"),
])
def test_config_validation(values, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig.from_dict(values)


def test_cli_reports_one_line_and_exit_code_2(smoke_files, tmp_path):
    run = subprocess.run([sys.executable, "-m", "trainables.finetune", "--train-file", str(tmp_path / "none.xyz"),
                          "--foundation", smoke_files.foundation], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == f"error: train_file = {tmp_path / 'none.xyz'}: file not found"


def test_inputs_pickle_with_packed_graphs_and_come_back_equal(smoke_inputs):
    """What Ray ships to a worker: the same graphs (every attribute, dtype and value) and model."""
    import pickle

    import torch

    back = pickle.loads(pickle.dumps(smoke_inputs))
    assert back.graphs.keys() == smoke_inputs.graphs.keys()
    for name, graphs in smoke_inputs.graphs.items():
        assert len(back.graphs[name]) == len(graphs)
        for original, copy in zip(graphs, back.graphs[name]):
            assert type(copy) is type(original) and copy.keys == original.keys
            for key in original.keys:
                a, b = original[key], copy[key]
                if isinstance(a, torch.Tensor):
                    assert a.dtype == b.dtype and torch.equal(a, b), (name, key)
                else:
                    assert a == b, (name, key)
    assert all(torch.equal(a, b) for a, b in zip(smoke_inputs.initial_model().state_dict().values(),
                                                  back.initial_model().state_dict().values()))
    batch = next(iter(D.make_loader(back.graphs["train"], 4, shuffle=False)))  # they still collate
    assert batch.num_graphs == 4


def test_initial_model_from_the_loaded_foundation_equals_one_rebuilt_from_its_state(smoke_inputs):
    import dataclasses

    import torch

    rebuilt = dataclasses.replace(smoke_inputs, _template=None).initial_model()  # from foundation_state
    built = smoke_inputs.initial_model()  # the template prepare_inputs built from the loaded foundation
    assert built.state_dict().keys() == rebuilt.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), rebuilt.state_dict().values()))


def _labels_only(frames, energy: bool, forces: bool):
    """Copies of `frames` keeping only the chosen labels (single points on a scan carry energies only)."""
    kept = []
    for atoms in frames:
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(copy, **({"energy": atoms.get_potential_energy()} if energy else {}),
                                          **({"forces": atoms.get_forces()} if forces else {}))
        kept.append(copy)
    return kept


def test_a_test_set_is_scored_on_the_labels_it_has(smoke_files, structures, tmp_path):
    """Energy-only and forces-only test sets run end to end; training files still need both labels."""
    from trainables.stages.finetune import run_finetune

    energy_only = _write(tmp_path / "scan.xyz", _labels_only(structures, energy=True, forces=False))
    forces_only = _write(tmp_path / "forces.xyz", _labels_only(structures, energy=False, forces=True))
    config = _user_config(smoke_files, smoke_files.train, compile=False, batch_size=4,
                          test_files={"scan": str(energy_only), "forces": str(forces_only)}, profile_tests=["scan"])
    result = run_finetune(config)
    scan, forces = result.scores["scan"], result.scores["forces"]
    assert np.isfinite(scan["energy_rmse_mev_atom"]) and np.isnan(scan["force_rmse_mev_a"])
    assert np.isnan(forces["energy_rmse_mev_atom"]) and np.isfinite(forces["force_rmse_mev_a"])
    assert len(scan["profile_reference_mev"]) == len(structures) and min(scan["profile_reference_mev"]) == 0.0
    assert scan["rel_energy_max_error_mev"] >= scan["rel_energy_rmse_mev"] > 0
    assert "rel_energy_rmse_mev" not in forces
    with pytest.raises(DataError, match=r"scan.xyz \(structure 0\): no forces label"):
        prepare_inputs(_user_config(smoke_files, energy_only))


def test_a_structure_with_neither_label_is_an_error(structures, tmp_path):
    path = _write(tmp_path / "bare.xyz", _labels_only(structures, energy=False, forces=False))
    with pytest.raises(DataError, match=r"bare.xyz \(structure 0\): neither an energy nor a forces label"):
        read_labelled(path, partial=True)


def test_profile_tests_must_name_test_files(smoke_files, tmp_path):
    with pytest.raises(ConfigError, match=r"profile_tests names \['scan'\], not among test_files"):
        _user_config(smoke_files, tmp_path / "train.xyz", profile_tests=["scan"])


def test_an_embedded_foundation_brings_its_corpus_as_replay_data(smoke_files, structures, tmp_path):
    """A user's train file fine-tuned from `embedded:SYSTEM` replays that system's pre-training corpus."""
    from trainables.embedded import default_system_name
    from trainables.stages.inputs import check_data

    train = _write(tmp_path / "mine.xyz", structures)
    config = FinetuneConfig.from_dict({"train_file": str(train), "foundation": f"embedded:{default_system_name()}",
                                       "data_size": "smoke", "e0s_file": str(smoke_files.e0s), "mode": "replay",
                                       "replay_samples": 4})
    said = []
    checked = check_data(config, said.append)
    assert checked.sources.foundation == smoke_files.foundation
    assert checked.sources.replay == smoke_files.train.parent / "pretrain.extxyz"
    assert len(checked.replay_items) >= 4
    assert said == [f"replay set: 4 of the {len(checked.replay_items)} configurations of the embedded pre-training "
                    f"corpus {checked.sources.replay} (no replay_file given)"]
    said.clear()
    check_data(config.replace(replay_file=str(checked.sources.replay)), said.append)
    assert said == []  # a replay_file given: nothing to say
    with pytest.raises(ConfigError, match="unknown system 'nowhere'"):
        check_data(config.replace(foundation="embedded:nowhere"))
