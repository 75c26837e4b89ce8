"""Tests of the L-BFGS refinement stage (Algorithm 1, arXiv:2512.05489 Appendix B) on small
problems with known answers: an ill-conditioned quadratic, Rosenbrock against scipy's L-BFGS-B,
a non-convex robust regression, and the validation bookkeeping."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from scipy.optimize import minimize, rosen, rosen_der

from trainables.core.lbfgs import (
    CurvaturePair,
    LBFGSConfig,
    lbfgs_refine,
    powell_damped_pair,
    two_loop_direction,
    weak_wolfe_line_search,
)
from trainables.errors import ConfigError


def recording(objective):
    """Wrap `objective` so that every evaluation (x, f, g) is kept, in call order."""
    calls = []

    def wrapped(x):
        f, g = objective(x)
        calls.append((x.clone(), f, g.clone()))
        return f, g

    return wrapped, calls


def quadratic(n=50, condition=1e4, seed=0, dtype=torch.float64):
    """f(x) = 0.5 x'Ax - b'x with A = Q diag(lambda) Q', Q a seeded random orthogonal basis and
    lambda evenly spaced in [1, condition]; b = A x*. Evaluated as 0.5 e'Ae with e = x - x*, the same
    function up to the constant 0.5 b'A^{-1}b, so that f keeps its relative precision near the
    minimum (0.5 x'Ax - b'x cancels to ~1e-15 |f*|, far above the decrease a 1e-8 gradient gives)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    a = (q * torch.linspace(1.0, condition, n, dtype=torch.float64)) @ q.T
    x_star = torch.randn(n, generator=gen, dtype=torch.float64)
    a, x_star = a.to(dtype), x_star.to(dtype)

    def objective(x):
        grad = a @ (x - x_star)
        return float(0.5 * torch.dot(x - x_star, grad)), grad

    return objective, a, x_star


def rosenbrock(x):
    """scipy's N-D Rosenbrock function and gradient on a float64 tensor."""
    xn = x.numpy()
    return float(rosen(xn)), torch.from_numpy(rosen_der(xn))


def cauchy_regression(rows=40, n=10, seed=0):
    """f(x) = sum_i log(1 + r_i^2), r = Mx - Mx_true: robust regression with the Cauchy loss, whose
    curvature 2(1 - r^2)/(1 + r^2)^2 is negative for |r| > 1, i.e. far from x_true."""
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(rows, n, generator=gen, dtype=torch.float64)
    x_true = torch.randn(n, generator=gen, dtype=torch.float64)

    def objective(x):
        r = m @ (x - x_true)
        return float(torch.log1p(r**2).sum()), m.T @ (2 * r / (1 + r**2))

    return objective, x_true


def steps(result):
    return len(result.records) - 1


def median_fevals(result):
    return statistics.median(r["fevals"] for r in result.records[1:])


def test_quadratic_converges_in_about_dimension_steps():
    """Condition number 1e4 in 50 dimensions: relative gradient 1e-8 in at most 2n steps (measured:
    72, 60, 62 steps for seeds 0-2; scipy's L-BFGS-B with maxcor=20: 72, 66, 62; with a log-spaced
    spectrum both need ~500), nearly always with one evaluation per step."""
    n = 50
    objective, a, x_star = quadratic(n)
    x0 = torch.zeros(n, dtype=torch.float64)
    g0 = float(torch.linalg.norm(a @ x_star))
    result = lbfgs_refine(objective, x0, LBFGSConfig(max_steps=500, grad_tol=1e-8 * g0))

    an, xn = a.numpy(), x_star.numpy()
    scipy = minimize(lambda x: (0.5 * (x - xn) @ an @ (x - xn), an @ (x - xn)), x0.numpy(), jac=True,
                     method="L-BFGS-B", options={"maxcor": 20, "gtol": 1e-8 * g0 / math.sqrt(n),
                                                 "ftol": 0.0, "maxiter": 10_000})
    print(f"\nquadratic n={n}: lbfgs_refine {steps(result)} steps / {result.total_fevals} evaluations, "
          f"scipy L-BFGS-B {scipy.nit} / {scipy.nfev}; median evaluations per step "
          f"{median_fevals(result)}")
    assert result.stop_reason == "grad_tol"
    assert torch.linalg.norm(a @ (result.x_best - x_star)) <= 1e-8 * g0
    assert steps(result) <= 2 * n
    assert median_fevals(result) <= 1.3


def test_quadratic_accepted_steps_satisfy_armijo_and_curvature():
    """Recomputed from the evaluations themselves: with s = x_{k+1} - x_k = alpha p,
    Armijo f_{k+1} <= f_k + c1 g_k's and curvature g_{k+1}'s >= c2 g_k's."""
    objective, a, x_star = quadratic(50, seed=1)
    config = LBFGSConfig(max_steps=40)
    logged, calls = recording(objective)
    result = lbfgs_refine(logged, torch.zeros(50, dtype=torch.float64), config)

    assert result.stop_reason == "max_steps"
    assert result.records[1]["fevals"] > 1  # the initial step was too short and got expanded,
    assert not result.records[1]["damped"]  # and the first pair, which sets the scale, is kept as is
    x, f, g = calls[0]
    for before, record in zip(result.records, result.records[1:]):
        assert record["wolfe"]
        x_new, f_new, g_new = calls[record["total_fevals"] - 1]  # a Wolfe trial ends its search
        assert record["total_fevals"] - before["total_fevals"] == record["fevals"]
        assert f_new == record["loss"]
        s = x_new - x
        assert f_new <= f + config.c1 * torch.dot(g, s)
        assert torch.dot(g_new, s) >= config.c2 * torch.dot(g, s)
        x, f, g = x_new, f_new, g_new


@pytest.mark.parametrize("n", [2, 10])
def test_rosenbrock_reaches_minimum_about_as_fast_as_scipy(n):
    """From the standard start (-1.2, 1, ...), to ||g|| <= 1e-8, with scipy's memory (maxcor=10).
    Measured: n=2 44 steps / 53 evaluations vs scipy 38 / 46; n=10 92 / 111 vs 78 / 96."""
    x0 = torch.tensor([-1.2, 1.0] * (n // 2), dtype=torch.float64)
    result = lbfgs_refine(rosenbrock, x0, LBFGSConfig(max_steps=500, history=10, grad_tol=1e-8))
    scipy = minimize(rosen, x0.numpy(), jac=rosen_der, method="L-BFGS-B",
                     options={"maxcor": 10, "gtol": 1e-8 / math.sqrt(n), "ftol": 0.0})
    print(f"\nRosenbrock n={n}: lbfgs_refine {steps(result)} steps / {result.total_fevals} evaluations "
          f"(median {median_fevals(result)} per step), scipy L-BFGS-B {scipy.nit} / {scipy.nfev}")
    assert scipy.success
    assert result.stop_reason == "grad_tol"
    assert torch.linalg.norm(result.x_best - 1.0) <= 1e-6
    assert steps(result) <= 1.3 * scipy.nit
    assert result.total_fevals <= 1.3 * scipy.nfev
    assert median_fevals(result) <= 1.3


def test_negative_curvature_pairs_are_damped_and_the_run_goes_on():
    """Started where the Cauchy loss is concave, with a 3-evaluation line search that accepts
    Armijo points that are still too short: s'y <= 0 occurs after a pair is stored, Powell damping
    makes it positive, and the run still converges to x_true."""
    objective, x_true = cauchy_regression()
    config = LBFGSConfig(max_steps=100, max_line_search=3, grad_tol=1e-8)
    result = lbfgs_refine(objective, torch.full((10,), 2.0, dtype=torch.float64), config)
    records = result.records[1:]

    negative = [r for r in records if r["sy_raw"] <= 0.0]
    assert any(r["step"] >= 2 for r in negative)  # a history existed: B is a real L-BFGS matrix
    assert all(r["damped"] and r["pair_stored"] and r["sy"] > 0.0 for r in negative)
    assert all(r["pair_stored"] and r["sy"] > 0.0 for r in records)
    assert all(b["loss"] > a["loss"] for b, a in zip(result.records, records))  # descent directions
    assert records[-1]["step"] >= negative[-1]["step"] + 10
    assert result.stop_reason == "grad_tol"
    assert torch.allclose(result.x_best, x_true, atol=1e-6)


def test_powell_damping_leaves_sigma_times_sBs():
    """y_bar = theta y + (1 - theta) Bs with theta = 0.8 s'Bs / (s'Bs - s'y) gives s'y_bar = 0.2 s'Bs;
    a pair with enough curvature passes unchanged."""
    gen = torch.Generator().manual_seed(3)
    root = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    b = root @ root.T + 6 * torch.eye(6, dtype=torch.float64)
    s = torch.randn(6, generator=gen, dtype=torch.float64)
    sbs = float(s @ b @ s)

    y_bar, damped = powell_damped_pair(s, -b @ s, b @ s, 0.2)
    assert damped
    assert float(s @ y_bar) == pytest.approx(0.2 * sbs, rel=1e-12)

    y = 0.3 * (b @ s)
    assert powell_damped_pair(s, y, b @ s, 0.2) == (y, False)


def test_the_papers_damping_rule_damps_only_nonpositive_curvature():
    """Algorithm 1 damps when y's <= 0; Powell's rule also damps 0 < s'y < sigma s'Bs."""
    gen = torch.Generator().manual_seed(3)
    root = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    b = root @ root.T + 6 * torch.eye(6, dtype=torch.float64)
    s = torch.randn(6, generator=gen, dtype=torch.float64)
    weak = 0.1 * (b @ s)  # s'y = 0.1 s'Bs > 0
    assert powell_damped_pair(s, weak, b @ s, 0.2, rule="paper") == (weak, False)
    assert powell_damped_pair(s, weak, b @ s, 0.2, rule="powell")[1]
    y_bar, damped = powell_damped_pair(s, -b @ s, b @ s, 0.2, rule="paper")
    assert damped and float(s @ y_bar) == pytest.approx(0.2 * float(s @ b @ s), rel=1e-12)


def test_two_loop_direction_matches_dense_bfgs_updates():
    """p = -H g with H built densely: H = gamma I, then H <- V'HV + rho ss', V = I - rho ys'."""
    gen = torch.Generator().manual_seed(4)
    n = 6
    root = torch.randn(n, n, generator=gen, dtype=torch.float64)
    hessian = root @ root.T + torch.eye(n, dtype=torch.float64)
    pairs = []
    for _ in range(3):
        s = torch.randn(n, generator=gen, dtype=torch.float64)
        y = hessian @ s
        pairs.append(CurvaturePair(s, y, 1.0 / float(s @ y)))
    g = torch.randn(n, generator=gen, dtype=torch.float64)

    newest = pairs[-1]
    h = float(newest.s @ newest.y / (newest.y @ newest.y)) * torch.eye(n, dtype=torch.float64)
    for pair in pairs:
        v = torch.eye(n, dtype=torch.float64) - pair.rho * torch.outer(pair.y, pair.s)
        h = v.T @ h @ v + pair.rho * torch.outer(pair.s, pair.s)
    assert torch.allclose(two_loop_direction(g, pairs), -h @ g, rtol=1e-10, atol=1e-12)


def line_trials(objective, config):
    """Run the line search in 1-D from x = 0 along p = 1; return it and the step lengths it tried."""
    logged, calls = recording(objective)
    x = torch.zeros(1, dtype=torch.float64)
    f, g = objective(x)
    search = weak_wolfe_line_search(logged, x, f, g, torch.ones(1, dtype=torch.float64), config)
    return search, [float(trial_x[0]) for trial_x, _, _ in calls]


def shifted_square(minimum):
    return lambda x: (float(0.5 * (x[0] - minimum) ** 2), x - minimum)


@pytest.mark.parametrize("minimum, alphas", [
    (30.0, [1.0, 2.0, 4.0]),  # too short: expand until a >= (1 - c2) * 30
    (0.3, [1.0, 0.3]),  # too long: the interpolating quadratic of a quadratic is exact
    (0.01, [1.0, 0.1, 0.01]),  # too long by far: each backtrack is safeguarded to >= 0.1 a
])
def test_line_search_expands_short_steps_and_backtracks_long_ones(minimum, alphas):
    search, tried = line_trials(shifted_square(minimum), LBFGSConfig())
    assert tried == pytest.approx(alphas, rel=1e-12)
    assert search.accepted.alpha == pytest.approx(alphas[-1], rel=1e-12)
    assert (search.wolfe, search.fevals) == (True, len(alphas))


def test_line_search_out_of_budget_takes_the_lowest_armijo_point():
    """f = -x + a bump: a = 1 and a = 2 both satisfy Armijo but are too short (slope < c2 g'p),
    and f(2) > f(1) on the bump's flank, so a = 1 is the best Armijo point of a 2-trial budget."""
    def bumped_slope(x):
        bump = 1.5 * torch.exp(-((x - 1.9) ** 2) / 0.05)
        return float(-x[0] + bump[0]), -1.0 - bump * 2 * (x - 1.9) / 0.05

    search, tried = line_trials(bumped_slope, LBFGSConfig(max_line_search=2))
    assert tried == [1.0, 2.0]
    assert (search.accepted.alpha, search.wolfe, search.fevals) == (1.0, False, 2)


def test_loss_at_its_round_off_floor_stops_with_no_decrease():
    """f = 1e20 + 0.5 ||x - 1||^2 rounds to 1e20 in float64: the first step, accepted, leaves f
    unchanged, and the default loss_tol = 0 stops there."""
    result = lbfgs_refine(lambda x: (1e20 + 0.5 * float(torch.sum((x - 1) ** 2)), x - 1),
                          torch.zeros(4, dtype=torch.float64))
    assert (result.stop_reason, steps(result)) == ("no_decrease", 1)
    assert result.records[1]["loss"] == result.records[0]["loss"]


def scripted_validation(scores):
    """validate() returning scores[k] at its k-th call, keeping each x it was given."""
    seen = []

    def validate(x):
        seen.append(x.clone())
        return {"energy_rmse": 1.0, "force_rmse": scores[len(seen) - 1]}

    return validate, seen


def test_best_validation_checkpoint_is_returned_after_patience():
    objective, _, _ = quadratic(10, condition=10.0)
    validate, seen = scripted_validation([5.0, 4.0, 3.0] + [3.0 + 0.1 * k for k in range(1, 20)])
    result = lbfgs_refine(objective, torch.zeros(10, dtype=torch.float64),
                          LBFGSConfig(patience=3), validate=validate)

    assert result.stop_reason == "patience"
    assert result.best_step == 2
    assert torch.equal(result.x_best, seen[2])
    assert steps(result) == 2 + 3
    assert result.records[2]["val"] == {"energy_rmse": 1.0, "force_rmse": 3.0}
    assert result.records[4]["loss"] < result.records[2]["loss"]  # training loss kept improving


def test_starting_point_is_kept_when_refinement_only_hurts_validation():
    objective, _, _ = quadratic(10, condition=10.0)
    x0 = torch.linspace(-1.0, 1.0, 10, dtype=torch.float64)
    validate, _ = scripted_validation([1.0 + 0.1 * k for k in range(20)])
    result = lbfgs_refine(objective, x0, LBFGSConfig(patience=2), validate=validate)

    assert (result.stop_reason, result.best_step, steps(result)) == ("patience", 0, 2)
    assert torch.equal(result.x_best, torch.linspace(-1.0, 1.0, 10, dtype=torch.float64))
    assert result.x_best is not x0


def test_float32_parameters_keep_their_dtype():
    objective, _, _ = quadratic(20, condition=100.0, dtype=torch.float32)
    result = lbfgs_refine(objective, torch.zeros(20), LBFGSConfig(max_steps=60))
    assert result.x_best.dtype == torch.float32
    assert result.records[-1]["loss"] < 1e-6 * result.records[0]["loss"]


def test_ascent_direction_fails_the_line_search_and_keeps_the_start():
    """A gradient of the wrong sign makes every trial fail Armijo: nothing is accepted."""
    objective, _, _ = quadratic(5, condition=10.0)
    config = LBFGSConfig(max_line_search=4)
    result = lbfgs_refine(lambda x: (objective(x)[0], -objective(x)[1]),
                          torch.zeros(5, dtype=torch.float64), config)
    assert (result.stop_reason, result.best_step, steps(result)) == ("line_search_failed", 0, 0)
    assert result.total_fevals == 1 + config.max_line_search
    assert torch.equal(result.x_best, torch.zeros(5, dtype=torch.float64))


def test_gradient_of_the_wrong_dtype_is_rejected():
    with pytest.raises(ValueError, match="torch.float64"):
        lbfgs_refine(lambda x: (0.0, torch.zeros(3, dtype=torch.float64)), torch.zeros(3))


def test_missing_score_key_is_reported():
    objective, _, _ = quadratic(5, condition=10.0)
    with pytest.raises(KeyError, match="force_rmse"):
        lbfgs_refine(objective, torch.zeros(5, dtype=torch.float64), validate=lambda x: {"e_rmse": 1.0})


def test_from_dict_builds_the_config():
    config = LBFGSConfig.from_dict({"max_steps": 40, "history": 10, "c2": 0.5})
    assert (config.max_steps, config.history, config.c2, config.c1) == (40, 10, 0.5, 1e-4)


@pytest.mark.parametrize("values, message", [
    ({"max_steps": 30, "lr": 1.0}, r"unknown LBFGSConfig key\(s\) \['lr'\]"),
    ({"c1": 0.9, "c2": 0.9}, r"0 < c1 < c2 < 1 .*got c1=0.9, c2=0.9"),
    ({"c1": 0.5, "c2": 0.1}, r"c1=0.5, c2=0.1"),
    ({"backtrack": 1.0}, r"backtrack must lie in \(0, 1\)"),
    ({"max_steps": 0}, r"max_steps must be >= 1"),
    ({"history": 2.5}, r"history must be an integer"),
    ({"patience": True}, r"patience must be an integer"),
])
def test_from_dict_rejects_bad_values_naming_them(values, message):
    with pytest.raises(ConfigError, match=message):
        LBFGSConfig.from_dict(values)
