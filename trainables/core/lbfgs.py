"""L-BFGS refinement stage: Algorithm 1 of Liu, Wang & Zhao, arXiv:2512.05489, Appendix B.

A first-order fine-tuning run is refined by a short (20-40 step) limited-memory BFGS stage on the
full training loss. Per step k, with x_k the flat parameter vector and g_k = grad f(x_k):

1. direction p_k = -H_k g_k by the two-loop recursion over the last m curvature pairs (s_i, y_i),
   H_k^0 = gamma_k I with gamma_k = s'y / y'y of the newest pair; while no pair is stored,
   H_k = (initial_step / ||g_k||) I, a steepest-descent step of length `initial_step`;
2. step length alpha_k by a weak Wolfe line search that starts at alpha = 1, backtracks while
   Armijo fails and expands a step that is too short; the accepted trial's gradient is reused;
3. s_k = x_{k+1} - x_k, y_k = g_{k+1} - g_k, Powell-damped against B_k s_k = -alpha_k g_k so that
   every stored pair has s'y > 0 (`damping`: when s'y < sigma s'Bs, Nocedal & Wright's rule and the
   default, or only when s'y <= 0, the paper's Algorithm 1);
4. validation of x_{k+1}; the best-scoring iterate (x_0 included) is returned, so the stage never
   ends worse than it started on the validation score.

torch.optim.LBFGS has neither the damping nor the validation early stopping nor the best
checkpoint, hence this module. It works on any function of one flat 1-D tensor (float32 or float64,
any device) and knows nothing of MACE or Ray. Dot products are accumulated in float64.

References:
    Liu & Nocedal (1989), Math. Program. 45, 503 (L-BFGS).
    Nocedal & Wright, Numerical Optimization, 2nd ed. (2006): Alg. 7.4 (two-loop recursion),
        eq. 7.20 (gamma), eq. 3.6 (Wolfe conditions), Procedure 18.2 (damped BFGS updating).
    Powell (1978), "Algorithms for nonlinear constraints that use Lagrangian functions",
        Math. Program. 14, 224 (damping).
    Lewis & Overton (2013), Math. Program. 141, 135 (bracketing weak Wolfe line search).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from trainables.core.config import LBFGSConfig

Objective = Callable[[torch.Tensor], tuple[float, torch.Tensor]]
Validate = Callable[[torch.Tensor], dict[str, float]]


@dataclass
class LBFGSResult:
    """Outcome of `lbfgs_refine`.

    Attributes:
        x_best: the iterate with the lowest validation score (lowest loss without `validate`),
            the starting point included; a tensor of x0's dtype and device.
        best_step: the step k of x_best (0 = the starting point).
        stop_reason: "grad_tol", "step_tol", "no_decrease", "patience", "max_steps" or
            "line_search_failed" (no trial step satisfied Armijo).
        records: one flat dict per step k (step 0 = the starting point), see `lbfgs_refine`.
        total_fevals: objective evaluations in all, including those of a failed last line search.
        pairs: the curvature pairs stored at the end, oldest first (H_k of the last iterate).
    """

    x_best: torch.Tensor
    best_step: int
    stop_reason: str
    records: list[dict[str, Any]]
    total_fevals: int
    pairs: list[CurvaturePair] = field(default_factory=list)


@dataclass(frozen=True)
class CurvaturePair:
    """A stored pair (s, y) with rho = 1 / s'y > 0, which keeps H positive definite."""

    s: torch.Tensor
    y: torch.Tensor
    rho: float


@dataclass(frozen=True)
class Trial:
    """One line-search evaluation: x = x_k + alpha p, f = f(x), g = grad f(x)."""

    alpha: float
    x: torch.Tensor
    f: float
    g: torch.Tensor


@dataclass(frozen=True)
class LineSearchResult:
    """The accepted trial (None when no trial satisfied Armijo), whether it also satisfies the
    curvature condition, and the number of objective evaluations spent."""

    accepted: Trial | None
    wolfe: bool
    fevals: int


def dot64(a: torch.Tensor, b: torch.Tensor) -> float:
    """a'b accumulated in float64 (float32 sums over ~1e6 parameters lose the digits we need)."""
    return float(torch.dot(a.to(torch.float64), b.to(torch.float64)))


def norm64(a: torch.Tensor) -> float:
    """Euclidean norm ||a|| accumulated in float64."""
    return math.sqrt(dot64(a, a))


def two_loop_direction(g: torch.Tensor, pairs: Sequence[CurvaturePair]) -> torch.Tensor:
    """Quasi-Newton direction p = -H g by the two-loop recursion (Nocedal & Wright, Alg. 7.4).

    H is the L-BFGS inverse-Hessian approximation: starting from H0 = gamma I with
    gamma = s'y / y'y of the newest pair (N&W eq. 7.20), each pair, oldest first, applies
    H <- (I - rho s y') H (I - rho y s') + rho s s'. H is positive definite when every rho > 0,
    so p is then a descent direction (g'p < 0). `pairs` runs oldest to newest and is not empty.
    """
    q = g.clone()
    coefficients = []
    for pair in reversed(pairs):
        a = pair.rho * dot64(pair.s, q)
        q.add_(pair.y, alpha=-a)
        coefficients.append(a)
    newest = pairs[-1]
    r = q.mul_(1.0 / (newest.rho * dot64(newest.y, newest.y)))  # gamma = s'y / y'y
    for pair, a in zip(pairs, reversed(coefficients)):
        b = pair.rho * dot64(pair.y, r)
        r.add_(pair.s, alpha=a - b)
    return r.neg_()


def search_direction(g: torch.Tensor, pairs: Sequence[CurvaturePair], initial_step: float) -> torch.Tensor:
    """p = -H g: the two-loop direction, or while no pair is stored the scaled steepest descent
    p = -(initial_step / ||g||) g, i.e. H0 = (initial_step / ||g||) I and ||p|| = initial_step."""
    if pairs:
        return two_loop_direction(g, pairs)
    return g * (-initial_step / norm64(g))


def weak_wolfe_line_search(objective: Objective, x: torch.Tensor, f: float, g: torch.Tensor,
                           p: torch.Tensor, config: LBFGSConfig) -> LineSearchResult:
    """Step length a along the descent direction p satisfying the weak Wolfe conditions (N&W eq. 3.6)

        Armijo:     f(x + a p) <= f(x) + c1 a g'p,
        curvature:  g(x + a p)'p >= c2 g'p,

    with at most `max_line_search` evaluations. Trials start at a = 1 and backtrack while Armijo
    fails, as in the paper, to the minimiser of the quadratic interpolating f(0), f'(0) and f(a)
    kept within [0.1 a, backtrack a] (N&W eq. 3.58). The weak curvature condition fails only when the step is
    too short (the slope is still steeply negative), which backtracking cannot repair; the trial
    then expands by 1 / backtrack, and once a too-long and a too-short trial bracket the Wolfe
    points, the bracket is bisected (Lewis & Overton 2013). Weak Wolfe implies
    s'y >= (1 - c2) a (-g'p) > 0. When the budget runs out without a Wolfe point, the Armijo trial
    of lowest f is accepted (wolfe=False); without one, nothing is (accepted=None). The gradient
    of the accepted trial is returned for reuse: no point is ever evaluated twice.
    """
    slope = dot64(g, p)
    if not slope < 0.0:  # an ascent, zero or NaN direction has no Armijo point
        return LineSearchResult(None, False, 0)
    too_short, too_long, alpha, shrunk = 0.0, math.inf, 1.0, 0.0
    best: Trial | None = None
    for fevals in range(1, config.max_line_search + 1):
        x_trial = torch.add(x, p, alpha=alpha)
        trial = Trial(alpha, x_trial, *_evaluate(objective, x_trial))
        if not trial.f <= f + config.c1 * alpha * slope:  # NaN or inf losses fail Armijo too
            too_long, shrunk = alpha, interpolated_backtrack(alpha, trial.f, f, slope, config.backtrack)
        elif dot64(trial.g, p) >= config.c2 * slope:
            return LineSearchResult(trial, True, fevals)
        else:
            too_short = alpha
            best = trial if best is None or trial.f < best.f else best
        alpha = _next_trial_step(too_short, too_long, shrunk, config.backtrack)
    return LineSearchResult(best, False, config.max_line_search)


def interpolated_backtrack(alpha: float, f_alpha: float, f0: float, slope: float, backtrack: float) -> float:
    """The minimiser -slope a^2 / (2 (f(a) - f0 - slope a)) of the quadratic through f(0), f'(0) =
    slope and f(a), safeguarded to [0.1 a, backtrack a]; plain backtracking for a non-finite f(a)."""
    if not math.isfinite(f_alpha):
        return backtrack * alpha
    curvature = 2.0 * (f_alpha - f0 - slope * alpha)
    step = -slope * alpha * alpha / curvature if curvature > 0 else backtrack * alpha
    return min(max(step, 0.1 * alpha), backtrack * alpha)


def _next_trial_step(too_short: float, too_long: float, shrunk: float, backtrack: float) -> float:
    """Backtrack (to `shrunk`) below a too-long step, expand above a too-short one, else bisect."""
    if too_short == 0.0:
        return shrunk
    if too_long == math.inf:
        return too_short / backtrack
    return 0.5 * (too_short + too_long)


def powell_damped_pair(s: torch.Tensor, y: torch.Tensor, bs: torch.Tensor,
                       threshold: float, rule: str = "powell") -> tuple[torch.Tensor, bool]:
    """Powell's damped gradient difference (Powell 1978; Nocedal & Wright, Procedure 18.2).

    With B the current Hessian approximation and sigma = `threshold`:

        y_bar = y                                   if s'y >= sigma s'Bs,
        y_bar = theta y + (1 - theta) B s,  theta = (1 - sigma) s'Bs / (s'Bs - s'y)   otherwise,

    so that s'y_bar = sigma s'Bs > 0 whenever s'Bs > 0, even where f has negative curvature
    along s (s'y <= 0). With `rule="paper"` (the paper's Algorithm 1) a pair is damped only when
    s'y <= 0; pairs of weak positive curvature are kept as measured. Returns (y_bar, damped).
    """
    sy, sbs = dot64(s, y), dot64(s, bs)
    if sy >= threshold * sbs or (rule == "paper" and sy > 0.0):
        return y, False
    theta = (1.0 - threshold) * sbs / (sbs - sy)
    return theta * y + (1.0 - theta) * bs, True


def store_curvature_pair(pairs: deque[CurvaturePair], s: torch.Tensor, y: torch.Tensor,
                         g: torch.Tensor, alpha: float, threshold: float, rule: str = "powell") -> dict[str, Any]:
    """Damp the pair (s_k, y_k), append it to `pairs` if s'y_bar > 0, return the record fields.

    Damping (`powell_damped_pair`) uses B_k s_k for the matrix B_k = H_k^{-1} that produced p_k:
    s_k = alpha_k p_k = -alpha_k H_k g_k gives B_k s_k = -alpha_k g_k exactly, at no cost.
    While no pair is stored, H_0 = (initial_step / ||g||) I is a step-length convention rather
    than curvature information, so a first pair with s'y > 0 is stored as measured and sets the
    scale gamma; one with s'y <= 0 is damped against B_0 = (||g_0|| / ||s_0||) I, the scaled
    identity for which the accepted step is a full step (B_0 s_0 = -g_0), so the next step grows
    instead of repeating the initial one. After damping s'y_bar >= threshold s'Bs > 0 along a
    descent direction, so a pair is skipped (pair_stored=False) only when round-off breaks that.
    """
    sy_raw = dot64(s, y)
    if pairs:
        y_bar, damped = powell_damped_pair(s, y, -alpha * g, threshold, rule)
    elif sy_raw > 0.0:
        y_bar, damped = y, False
    else:
        y_bar, damped = powell_damped_pair(s, y, -g, threshold, rule)
    sy = dot64(s, y_bar)
    if sy > 0.0:
        pairs.append(CurvaturePair(s, y_bar, 1.0 / sy))
    return {"sy_raw": sy_raw, "sy": sy, "damped": damped, "pair_stored": sy > 0.0}


def _evaluate(objective: Objective, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(f(x), grad f(x)), checking that the gradient matches x in shape, dtype and device.

    The gradient is copied, so the objective may hand back a buffer it overwrites on its next call.
    """
    f, g = objective(x)
    if g.shape != x.shape or g.dtype != x.dtype or g.device != x.device:
        raise ValueError(f"objective returned a gradient of shape {tuple(g.shape)}, {g.dtype} on "
                         f"{g.device} for parameters of shape {tuple(x.shape)}, {x.dtype} on {x.device}")
    return float(f), g.detach().clone()


def _validation(validate: Validate | None, x: torch.Tensor, score_key: str,
                loss: float) -> tuple[dict[str, float], float]:
    """(metrics, score): validate(x) and its `score_key` entry (lower is better), or ({}, loss)."""
    if validate is None:
        return {}, loss
    val = dict(validate(x))
    if score_key not in val:
        raise KeyError(f"validate() returned {sorted(val)} without the score key {score_key!r}")
    return val, float(val[score_key])


def _record(step: int, f: float, g: torch.Tensor, start: float, val: Mapping[str, float],
            **fields: Any) -> dict[str, Any]:
    """One row of the refinement curve (`val` holds the validation metrics)."""
    return {"step": step, "loss": f, "grad_norm": norm64(g), **fields, "val": val,
            "wall_time_s": time.perf_counter() - start}


_NO_STEP = {"alpha": 0.0, "step_length": 0.0, "wolfe": False, "sy_raw": math.nan, "sy": math.nan,
            "damped": False, "pair_stored": False}


def _stop_reason(config: LBFGSConfig, record: dict[str, Any], previous_loss: float,
                 steps_since_best: int) -> str | None:
    """The first stopping test that `record` (step k >= 1) meets, in the order below, or None."""
    tests = [
        ("grad_tol", record["grad_norm"] <= config.grad_tol),
        ("step_tol", record["step_length"] <= config.step_tol),
        ("no_decrease", previous_loss - record["loss"] <= config.loss_tol * abs(previous_loss)),
        ("patience", steps_since_best >= config.patience),
        ("max_steps", record["step"] >= config.max_steps),
    ]
    return next((reason for reason, met in tests if met), None)


def lbfgs_refine(objective: Objective, x0: torch.Tensor, config: LBFGSConfig = LBFGSConfig(),
                 validate: Validate | None = None, score_key: str = "force_rmse") -> LBFGSResult:
    """Refine x0 by L-BFGS with Powell damping and validation early stopping (arXiv:2512.05489,
    Appendix B, Algorithm 1; the steps are listed in this module's docstring).

    Args:
        objective: x -> (f(x), grad f(x)) for a flat 1-D tensor x: f a float, the gradient a
            tensor of x's shape, dtype and device (copied, so a reused buffer is fine). Called
            once per line-search trial, never twice at one point; x must not be modified.
        x0: the starting point (e.g. the end of a first-order run); not modified.
        config: the hyper-parameters.
        validate: x -> metrics such as {"energy_rmse": ..., "force_rmse": ...}, called once per
            iterate (x0 included). Without it, the loss is the score.
        score_key: the metric of `validate` to minimise.

    Returns:
        LBFGSResult with the best-scoring iterate. Each record holds: step, loss, grad_norm,
        alpha (the accepted multiple of p), step_length (||x_{k+1} - x_k||), fevals (objective
        evaluations this step), total_fevals, wolfe (the accepted trial met both conditions),
        sy_raw (s'y), sy (s'y after damping), damped, pair_stored (sy > 0), val (the metrics, or {})
        and wall_time_s (seconds since the call). Step 0 has alpha = step_length = 0 and NaN s'y.
    """
    start = time.perf_counter()
    x = _checked_start(x0)
    f, g = _evaluate(objective, x)
    val, best_score = _validation(validate, x, score_key, f)
    records = [_record(0, f, g, start, val, **_NO_STEP, fevals=1, total_fevals=1)]
    best_x, best_step = x, 0
    pairs: deque[CurvaturePair] = deque(maxlen=config.history)
    total_fevals = 1
    stop = "grad_tol" if records[0]["grad_norm"] <= config.grad_tol else None
    while stop is None:
        p = search_direction(g, pairs, config.initial_step)
        search = weak_wolfe_line_search(objective, x, f, g, p, config)
        total_fevals += search.fevals
        if search.accepted is None:
            stop = "line_search_failed"
            break
        trial = search.accepted
        s = trial.x - x
        curvature = store_curvature_pair(pairs, s, trial.g - g, g, trial.alpha, config.powell_threshold,
                                         config.damping)
        previous_loss, (x, f, g) = f, (trial.x, trial.f, trial.g)
        val, score = _validation(validate, x, score_key, f)
        step = len(records)
        records.append(_record(step, f, g, start, val, alpha=trial.alpha, step_length=norm64(s),
                               wolfe=search.wolfe, **curvature, fevals=search.fevals,
                               total_fevals=total_fevals))
        if score < best_score:
            best_x, best_step, best_score = x, step, score
        stop = _stop_reason(config, records[-1], previous_loss, step - best_step)
    return LBFGSResult(best_x, best_step, stop, records, total_fevals, list(pairs))


def _checked_start(x0: torch.Tensor) -> torch.Tensor:
    """A detached copy of x0, which must be a 1-D floating-point tensor."""
    if x0.ndim != 1 or not x0.is_floating_point():
        raise ValueError(f"x0 must be a flat 1-D floating-point tensor, got shape {tuple(x0.shape)} "
                         f"and dtype {x0.dtype}")
    return x0.detach().clone()
