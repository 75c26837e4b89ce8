"""Curvature measurement (trainables.core.curvature): known answers on planted spectra, the
preconditioners of every registered optimizer from its real state, L-BFGS's root, and Hessian-vector
products through a real MACE model against finite differences of its gradients."""

import math

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import aslinearoperator
from scipy.stats import wasserstein_distance

from trainables.core.curvature import (
    LBFGS,
    Eq1Hessian,
    OptimizerRecord,
    alpha_exponent,
    diagonal_root,
    effective_condition_number,
    first_order_record,
    lbfgs_record,
    lbfgs_root,
    preconditioned,
    preconditioner_for,
    second_moment_denominators,
    stochastic_lanczos_quadrature,
    top_eigenvalues,
)
from trainables.core.config import LBFGSConfig
from trainables.core.lbfgs import CurvaturePair, lbfgs_refine, two_loop_direction
from trainables.core.loss import LossWeights
from trainables.core.optimizers import OPTIMIZERS, get_optimizer_spec
from trainables.errors import ConfigError


def planted(eigenvalues: np.ndarray, seed: int = 0) -> np.ndarray:
    """A symmetric matrix with the given spectrum in a random orthonormal basis."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((eigenvalues.size, eigenvalues.size)))
    return (q * eigenvalues) @ q.T


def test_top_eigenvalues_of_a_planted_spectrum():
    spectrum = np.concatenate([[100.0, 50.0, 20.0], np.linspace(0.01, 1.0, 297)])
    found = top_eigenvalues(aslinearoperator(planted(spectrum)), k=3, tol=1e-10)
    np.testing.assert_allclose(found, [100.0, 50.0, 20.0], rtol=1e-8)


def test_slq_trace_and_density_of_a_planted_spectrum():
    spectrum = np.random.default_rng(1).uniform(1.0, 10.0, size=400)
    quadrature = stochastic_lanczos_quadrature(aslinearoperator(planted(spectrum)), steps=40, probes=30)
    assert quadrature.trace == pytest.approx(spectrum.sum(), rel=0.05)  # Hutchinson: 1.4% standard error here
    nodes, weights = quadrature.pooled()
    assert weights.sum() == pytest.approx(1.0)
    # the density's distance to the true spectrum (W1, in eigenvalue units) against the spectrum's width of 9
    assert wasserstein_distance(nodes, spectrum, u_weights=weights) < 0.15


def test_a_preconditioner_equal_to_the_inverse_hessian_gives_kappa_1_and_alpha_1():
    diagonal = np.logspace(-3, 3, 200)
    hessian = aslinearoperator(np.diag(diagonal))
    kappa_h = kappa(hessian)
    kappa_ph = kappa(preconditioned(hessian, diagonal_root(1.0 / diagonal)))
    assert kappa_h > 100
    assert kappa_ph == pytest.approx(1.0, abs=1e-9)
    assert alpha_exponent(kappa_ph, kappa_h) == pytest.approx(1.0, abs=1e-9)


def test_the_identity_preconditioner_gives_alpha_0():
    hessian = aslinearoperator(planted(np.logspace(-2, 2, 200)))
    kappa_h = kappa(hessian)
    assert alpha_exponent(kappa(preconditioned(hessian, diagonal_root(np.ones(200)))), kappa_h) == pytest.approx(0.0, abs=1e-9)


def test_a_flat_spectrum_has_no_alpha():
    assert math.isnan(alpha_exponent(1.0, 1.0))


def kappa(operator) -> float:
    quadrature = stochastic_lanczos_quadrature(operator, steps=30, probes=4)
    return effective_condition_number(top_eigenvalues(operator, k=1)[0], quadrature, 1e-9, 0.05)[0]


def test_lbfgs_root_squares_to_the_two_loop_operator():
    rng = np.random.default_rng(2)
    pairs = []
    for _ in range(5):
        s = torch.tensor(rng.standard_normal(50))
        y = s * torch.tensor(rng.uniform(0.5, 3.0, 50))  # s'y > 0
        pairs.append(CurvaturePair(s, y, 1.0 / float(s @ y)))
    root = lbfgs_root(pairs)
    v = rng.standard_normal(50)
    expected = -two_loop_direction(torch.tensor(v), pairs).numpy()
    np.testing.assert_allclose(root.matvec(root.matvec(v)), expected, rtol=1e-9, atol=1e-12)


def test_the_lbfgs_stage_record_gives_its_two_loop_operator(tmp_path):
    """The pairs an L-BFGS run ends with, saved and loaded, give P = H_k over the model's weights."""
    model = torch.nn.Linear(3, 2, bias=False).double()
    a = torch.tensor(planted(np.linspace(1.0, 20.0, 6), seed=3))

    def objective(x: torch.Tensor):
        return float(0.5 * x @ a @ x), a @ x

    result = lbfgs_refine(objective, torch.ones(6, dtype=torch.float64), LBFGSConfig(max_steps=4, history=4))
    lbfgs_record(model, [model.weight], result.pairs, {}).save(tmp_path)
    record = OptimizerRecord.load(tmp_path)
    spec = preconditioner_for(record)
    root = spec.root(record, dict(model.named_parameters()))
    v = np.arange(6.0)
    expected = -two_loop_direction(torch.tensor(v), result.pairs).numpy()
    assert spec.name == "lbfgs_two_loop" and len(result.pairs) == 4
    np.testing.assert_allclose(root.matvec(root.matvec(v)), expected, rtol=1e-9)


EXPECTED_PRECONDITIONER = {"sgd": "identity", "sgd_momentum": "identity", "lamb": "trust_ratio"}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_gets_its_preconditioner_from_its_saved_state(name, tmp_path):
    model, optimizer = stepped(name, steps=3)
    record = first_order_record(model, optimizer, name, {"optimizer": name})
    record.save(tmp_path)
    loaded = OptimizerRecord.load(tmp_path)
    spec = preconditioner_for(loaded)
    assert spec.name == EXPECTED_PRECONDITIONER.get(name, "second_moment")
    root = spec.root(loaded, dict(model.named_parameters()))
    diagonal = root.matvec(np.ones(root.shape[0]))
    assert root.shape[0] == sum(p.numel() for p in model.parameters()) and (diagonal > 0).all()


@pytest.mark.parametrize("name", ["adam", "schedulefree"])
def test_second_moment_is_bias_corrected(name):
    model, optimizer = stepped(name, steps=3)
    record = first_order_record(model, optimizer, name, {})
    [denominator] = second_moment_denominators(record, dict(model.named_parameters()))
    v = next(iter(optimizer.state.values()))["exp_avg_sq"].double()
    torch.testing.assert_close(denominator, (v / (1 - 0.999**3)).sqrt() + 1e-8)


def test_lamb_root_carries_the_trust_ratio():
    model, optimizer = stepped("lamb", steps=3)
    record = first_order_record(model, optimizer, "lamb", {})
    parameters = dict(model.named_parameters())
    [denominator] = second_moment_denominators(record, parameters)
    state = next(iter(optimizer.state.values()))
    ratio = min(float(parameters["weight"].detach().norm()), 10.0) / float((state["exp_avg"].double() / denominator).norm())
    root = preconditioner_for(record).root(record, parameters)
    np.testing.assert_allclose(root.matvec(np.ones(4)) ** 2, (ratio / denominator).numpy().ravel(), rtol=1e-6)


def stepped(name: str, steps: int):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2, bias=False)
    optimizer = get_optimizer_spec(name).build(model.parameters(), lr=1e-2)
    if get_optimizer_spec(name).has_train_eval_modes:
        optimizer.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(8, 2)).pow(2).sum().backward()
        optimizer.step()
    return model, optimizer


def test_a_missing_record_says_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="holds no optimizer_state.pt"):
        OptimizerRecord.load(tmp_path)


def test_an_lbfgs_record_without_pairs_is_refused():
    record = OptimizerRecord(LBFGS, ["w"], {"s": [], "y": []}, {})
    with pytest.raises(ConfigError, match="no curvature pairs"):
        preconditioner_for(record).root(record, {"w": torch.zeros(3)})


@pytest.fixture(scope="module")
def float64_smoke(cache_root):
    from trainables.core.config import FinetuneConfig
    from trainables.stages.inputs import prepare_inputs

    inputs = prepare_inputs(FinetuneConfig(data_size="smoke", dtype="float64", threads=1, compile=False))
    return inputs.initial_model(), inputs.graphs["train"][:3]


def test_mace_hessian_vector_products_match_finite_differences_of_gradients(float64_smoke):
    """Double backward through mace and e3nn: H v against (g(x + h v) - g(x - h v)) / 2h, float64."""
    model, graphs = float64_smoke
    parameters = dict(model.named_parameters())
    hessian = Eq1Hessian(model, parameters, graphs, LossWeights(), torch.device("cpu"), batch_size=2)
    v = np.random.default_rng(0).standard_normal(hessian.shape[0])
    v /= np.linalg.norm(v)
    product = hessian.matvec(v)
    step = 1e-4
    flat = torch.nn.utils.parameters_to_vector(parameters.values()).detach().clone()
    gradients = []
    for sign in (1, -1):
        torch.nn.utils.vector_to_parameters(flat + sign * step * torch.tensor(v), parameters.values())
        gradients.append(hessian.gradient())
    torch.nn.utils.vector_to_parameters(flat, parameters.values())
    difference = (gradients[0] - gradients[1]) / (2 * step)
    assert np.linalg.norm(product - difference) < 1e-6 * np.linalg.norm(product)
    assert hessian.matvecs == 1
