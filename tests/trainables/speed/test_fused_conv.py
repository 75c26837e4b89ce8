"""The convolution in inductor's layout: the same MACE, in energies, forces and the loss gradient."""

import torch
from e3nn import o3
from mace.modules.irreps_tools import tp_out_irreps_with_instructions
from mace.tools.scripts_utils import extract_config_mace_model

from trainables.core import data as D
from trainables.core.loss import LossWeights, eq1_loss
from trainables.core.training import forward
from trainables.speed.compiled import _shallow_tree_copy, compiled_view, eager_copy
from trainables.speed.fused_conv import ScalarNodeConvolution, fuse_convolutions


def _batch(inputs, size=4):
    return next(iter(D.make_loader(inputs.graphs["train"], size, shuffle=False)))


def _loss_and_gradients(model, parameters, batch):
    for parameter in parameters:
        parameter.grad = None
    output = forward(model, batch, training=True)
    loss = eq1_loss(batch, output, LossWeights(1.0, 100.0))
    loss.backward()
    return output, loss.detach(), [parameter.grad.clone() for parameter in parameters]


def _assert_same_model(plain, fused, batch):
    """Energies, forces (a first derivative), and the loss's gradient (through the forces' second
    derivative) of `fused` equal `plain`'s; they share their parameters. `fused` runs first, on the
    batch as the training loop hands it over (a compiled step that first saw positions already
    requiring grad would be another graph than training's: another compile of tens of seconds)."""
    parameters = [p for p in plain.parameters() if p.requires_grad]
    got, got_loss, got_grads = _loss_and_gradients(fused, parameters, batch)
    expected, expected_loss, expected_grads = _loss_and_gradients(plain, parameters, batch)
    torch.testing.assert_close(got["energy"], expected["energy"], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got["forces"], expected["forces"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_loss, expected_loss, rtol=1e-4, atol=1e-6)
    for got_grad, expected_grad in zip(got_grads, expected_grads):
        torch.testing.assert_close(got_grad, expected_grad, rtol=1e-3, atol=1e-5)


def test_the_embedded_default_fuses_every_interaction_and_computes_the_same(smoke_inputs):
    plain = eager_copy(smoke_inputs.initial_model())
    fused = _shallow_tree_copy(plain)
    assert fuse_convolutions(fused) == len(plain.interactions) == 2
    assert all(isinstance(block.conv_tp, ScalarNodeConvolution) for block in fused.interactions)
    assert not any(isinstance(block.conv_tp, ScalarNodeConvolution) or hasattr(block, "conv_fusion")
                   for block in plain.interactions)  # the saved model stays plain mace
    _assert_same_model(plain, fused, _batch(smoke_inputs))


def test_a_model_with_vector_features_fuses_only_its_first_interaction(smoke_inputs):
    """MACE-MP-0 medium and MACE-OFF carry 1o features between interactions: only the first
    interaction, whose node features are the scalar embedding, qualifies."""
    config = extract_config_mace_model(smoke_inputs.initial_model())
    config.update(hidden_irreps=o3.Irreps("8x0e+8x1o"), atomic_numbers=[int(z) for z in config["atomic_numbers"]])
    torch.manual_seed(0)
    plain = eager_copy(type(smoke_inputs.initial_model())(**config))
    fused = _shallow_tree_copy(plain)
    assert fuse_convolutions(fused) == 1
    assert isinstance(fused.interactions[0].conv_tp, ScalarNodeConvolution)
    assert not isinstance(fused.interactions[1].conv_tp, ScalarNodeConvolution)
    _assert_same_model(plain, fused, _batch(smoke_inputs))


def test_only_per_edge_uvu_products_of_scalar_nodes_qualify():
    sh = o3.Irreps.spherical_harmonics(2)

    def product(nodes: str, **options):
        irreps_mid, instructions = tp_out_irreps_with_instructions(o3.Irreps(nodes), sh, o3.Irreps(nodes + "+4x1o+4x2e"))
        options = {"shared_weights": False, "internal_weights": False, **options}
        return o3.TensorProduct(o3.Irreps(nodes), sh, irreps_mid, instructions=instructions, **options)

    assert ScalarNodeConvolution.from_tensor_product(product("4x0e")) is not None
    assert ScalarNodeConvolution.from_tensor_product(product("4x0e+4x1o")) is None  # vector node features
    assert ScalarNodeConvolution.from_tensor_product(product("4x0e", shared_weights=True, internal_weights=True)) is None
    assert ScalarNodeConvolution.from_tensor_product(torch.nn.Linear(2, 2)) is None
    assert ScalarNodeConvolution.from_tensor_product(None) is None


def test_the_compiled_step_runs_the_fused_convolution_and_matches_eager(smoke_inputs):
    plain = eager_copy(smoke_inputs.initial_model())
    view = compiled_view(plain)
    assert all(isinstance(block.conv_tp, ScalarNodeConvolution) for block in view.compiled._orig_mod.interactions)
    _assert_same_model(plain, view, _batch(smoke_inputs))
