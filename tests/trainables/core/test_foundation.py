"""Foundation models: state_dict round trip, mace's pickled modules, element subsets, bad files."""

import pytest
import torch

from trainables.core.data import make_loader
from trainables.core.foundation import finetune_model, load_foundation, save_model
from trainables.core.training import forward
from trainables.errors import FoundationError


def _predict(model, graphs):
    batch = next(iter(make_loader(graphs[:4], 4, shuffle=False)))
    out = forward(model, batch, training=False)
    return out["energy"].detach(), out["forces"].detach()


def test_state_dict_round_trip_gives_identical_predictions(smoke_inputs, tmp_path):
    model = finetune_model(smoke_inputs.foundation(), smoke_inputs.elements, smoke_inputs.e0s, torch.float32)
    loaded = load_foundation(save_model(model, tmp_path / "m.pt"))
    for a, b in zip(_predict(model, smoke_inputs.graphs["val"]), _predict(loaded, smoke_inputs.graphs["val"])):
        assert torch.equal(a, b)


def test_whole_pickled_module_loads_like_mace_ships_them(smoke_inputs, smoke_files, tmp_path):
    from trainables.core.data import build_graphs, read_labelled
    from trainables.core.foundation import foundation_elements

    model = smoke_inputs.foundation()
    torch.save(model, tmp_path / "whole.model")
    loaded = load_foundation(tmp_path / "whole.model")
    graphs = build_graphs(read_labelled(smoke_files.train)[:4], foundation_elements(model), float(model.r_max),
                          torch.float32)
    for a, b in zip(_predict(model, graphs), _predict(loaded, graphs)):
        assert torch.equal(a, b)


def test_subset_model_equals_foundation_on_target_elements(smoke_inputs, smoke_files):
    """Restricting to the target's elements (with the foundation's E0s) leaves predictions unchanged."""
    from trainables.core.data import build_graphs, read_labelled
    from trainables.core.foundation import foundation_e0s, foundation_elements

    foundation = smoke_inputs.foundation()
    subset = finetune_model(foundation, smoke_inputs.elements, foundation_e0s(foundation), torch.float32)
    items = read_labelled(smoke_files.train)[:4]
    r_max = float(foundation.r_max)
    e_sub, f_sub = _predict(subset, build_graphs(items, smoke_inputs.elements, r_max, torch.float32))
    e_full, f_full = _predict(foundation, build_graphs(items, foundation_elements(foundation), r_max, torch.float32))
    assert len(smoke_inputs.elements) < len(foundation_elements(foundation))
    assert torch.allclose(e_sub, e_full, rtol=1e-5, atol=1e-4)
    assert torch.allclose(f_sub, f_full, atol=1e-4)


def test_not_a_model_file(tmp_path):
    (tmp_path / "notes.model").write_text("not a model")
    with pytest.raises(FoundationError, match="notes.model is not a model file"):
        load_foundation(tmp_path / "notes.model")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "dict.pt")
    with pytest.raises(FoundationError, match="does not hold a MACE model"):
        load_foundation(tmp_path / "dict.pt")


def test_unknown_name_lists_mace_mp_names():
    with pytest.raises(FoundationError, match="foundation model not found: mace-xl.*mace_mp names: small, medium"):
        load_foundation("mace-xl")


def test_run_e0s_survive_when_the_element_count_matches(smoke_inputs):
    """mace's loader copies same-shaped foundation tensors; the run's own E0s must win (e.g. DFT E0s
    fine-tuning an xTB foundation with the same four elements)."""
    from trainables.core.foundation import foundation_elements

    foundation = smoke_inputs.foundation()
    elements = foundation_elements(foundation)
    dft_e0s = {z: -1000.0 - z for z in elements}
    model = finetune_model(foundation, elements, dft_e0s, torch.float32)
    assert model.atomic_energies_fn.atomic_energies.flatten().tolist() == [dft_e0s[z] for z in elements]


def test_saved_model_keeps_its_trainable_tensors(smoke_inputs, tmp_path):
    """The fine-tuning model trains the Bessel weights (mace makes them parameters); a reloaded
    model, e.g. the L-BFGS stage's start, must train the same tensors."""
    model = finetune_model(smoke_inputs.foundation(), smoke_inputs.elements, smoke_inputs.e0s, torch.float32)
    loaded = load_foundation(save_model(model, tmp_path / "m.pt"))
    assert [n for n, _ in loaded.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert "radial_embedding.bessel_fn.bessel_weights" in dict(loaded.named_parameters())


def test_loading_a_foundation_prints_no_third_party_warnings(smoke_files):
    """Building a MACE model scripts e3nn code; TorchScript's warnings about it (42 in one study)
    must not reach the user's terminal. Run as a user would: a fresh process, warnings shown."""
    import os
    import subprocess
    import sys

    code = ("import trainables, torch; from trainables.core.foundation import finetune_model, load_foundation; "
            f"m = load_foundation({str(smoke_files.foundation)!r}); finetune_model(m, [1, 6], {{1: -1.0, 6: -2.0}}, torch.float32)")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Warning" not in run.stderr, run.stderr[-2000:]
