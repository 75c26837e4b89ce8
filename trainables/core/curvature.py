"""Curvature of the Eq. 1 loss at a model's weights, and of the optimizer's preconditioned loss.

The paper (Liu, Wang, Zhao, arXiv 2512.05489, Sec. 2.3 and Appendix A) reads every optimizer as a
preconditioner P applied to the gradient: the error contracts under I - lr P H, so what matters is
the spectrum of P H, which equals that of the symmetric P^(1/2) H P^(1/2). It claims
kappa(PH) = kappa(H)^(1 - alpha), alpha ~ 1 for Adam-type scaling and 0 for SGD. This module
measures it:

- `Eq1Hessian`: H of Eq. 1 (energies and autograd forces, a mean over a fixed sample of training
  configurations) as a scipy LinearOperator of Hessian-vector products. The forces are already a
  derivative of the model, so H v is the third derivative of the energy: one double backward
  through mace and e3nn, which works (checked against finite differences of gradients in
  tests/trainables/core/test_curvature.py);
- `top_eigenvalues` (Lanczos: scipy's eigsh), `stochastic_lanczos_quadrature` (the spectral
  density, Ubaru, Chen & Saad 2017, as in PyHessian, Yao et al. 2020, whose trace is Hutchinson's
  estimate on the same Rademacher probes), `effective_condition_number` and `alpha_exponent`;
- `PRECONDITIONERS`: P^(1/2) from an optimizer's saved state, chosen by the optimizer registry's
  capability flags and the state it keeps (never by name), and `OptimizerRecord`, what a run saves
  beside its final model (`OPTIMIZER_STATE_FILE`) for them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, aslinearoperator, eigsh

from trainables.core.data import make_loader
from trainables.core.lbfgs import CurvaturePair, two_loop_direction
from trainables.core.loss import LossWeights, loss_sum
from trainables.core.optimizers import get_optimizer_spec
from trainables.core.training import forward, on_device
from trainables.errors import ConfigError
from trainables.files import write_atomically

OPTIMIZER_STATE_FILE = "optimizer_state.pt"
LBFGS = "lbfgs"  # the record of the L-BFGS stage, which is not an entry of the optimizer registry


# The Hessian of Eq. 1 ----------------------------------------------------------------------------

class Eq1Hessian(LinearOperator):
    """H = d^2 L / d theta^2 of Eq. 1 over `graphs` (a mean over configurations, as training's
    loss) at `model`'s current weights, over `parameters` (name -> tensor, in order). Products run
    in the model's dtype; `matvecs` and `seconds` count the Hessian-vector products and their time."""

    def __init__(self, model: torch.nn.Module, parameters: dict[str, torch.Tensor], graphs: Sequence,
                 weights: LossWeights, device: torch.device, batch_size: int = 8):
        self.model, self.names, self.params = model, list(parameters), list(parameters.values())
        self.batches = [on_device(b, device) for b in make_loader(list(graphs), batch_size, shuffle=False)]
        self.count, self.weights = len(graphs), weights
        self.matvecs, self.seconds = 0, 0.0
        size = sum(p.numel() for p in self.params)
        super().__init__(dtype=np.float64, shape=(size, size))

    def _matvec(self, v: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        vector = torch.as_tensor(np.ravel(v), dtype=self.params[0].dtype, device=self.params[0].device)
        tangents = split_like(vector, self.params)
        total = torch.zeros_like(vector)
        for batch in self.batches:
            total += self._batch_product(batch, tangents)
        self.matvecs += 1
        self.seconds += time.perf_counter() - start
        return total.detach().cpu().double().numpy()

    def _batch_product(self, batch, tangents: list[torch.Tensor]) -> torch.Tensor:
        loss = loss_sum(batch, forward(self.model, batch, training=True), self.weights) / self.count
        grads = torch.autograd.grad(loss, self.params, create_graph=True)
        directional = sum((g * t).sum() for g, t in zip(grads, tangents))
        products = torch.autograd.grad(directional, self.params, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if h is None else h).reshape(-1) for h, p in zip(products, self.params)])

    def gradient(self) -> np.ndarray:
        """The gradient of the same loss (for finite-difference checks)."""
        total = torch.zeros(self.shape[0], dtype=self.params[0].dtype, device=self.params[0].device)
        for batch in self.batches:
            loss = loss_sum(batch, forward(self.model, batch, training=True), self.weights) / self.count
            grads = torch.autograd.grad(loss, self.params, allow_unused=True)
            total += torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, self.params)])
        return total.detach().cpu().double().numpy()


def split_like(vector: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """`vector` cut into views shaped as `tensors` (in order)."""
    pieces = torch.split(vector, [t.numel() for t in tensors])
    return [piece.view_as(t) for piece, t in zip(pieces, tensors)]


# Spectra -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Quadrature:
    """Stochastic Lanczos quadrature: per probe, the Ritz values (`nodes`) of its Lanczos tridiagonal
    and their weights (squared first components, summing to 1 per probe); the spectral density is
    their mean over probes. `traces`: Hutchinson's z'Az of each Rademacher probe z (= n alpha_1)."""

    nodes: list[np.ndarray]
    weights: list[np.ndarray]
    traces: np.ndarray

    @property
    def trace(self) -> float:
        return float(np.mean(self.traces))

    def pooled(self) -> tuple[np.ndarray, np.ndarray]:
        """(nodes, weights) of all probes, the weights summing to 1 (the spectral measure / n)."""
        nodes = np.concatenate(self.nodes)
        weights = np.concatenate(self.weights) / len(self.nodes)
        return nodes, weights


def lanczos_tridiagonal(operator: LinearOperator, start: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta) of `steps` Lanczos steps from `start` with full reorthogonalisation (Golub & Van
    Loan, Alg. 10.1.1); stops early at an invariant subspace (beta ~ 0)."""
    basis = [start / np.linalg.norm(start)]
    alphas, betas = [], []
    for k in range(steps):
        w = operator.matvec(basis[k])
        alphas.append(float(basis[k] @ w))
        w = w - alphas[-1] * basis[k] - (betas[-1] * basis[k - 1] if k else 0.0)
        q = np.array(basis)
        w -= q.T @ (q @ w)  # full reorthogonalisation: without it Ritz values repeat (ghosts)
        beta = float(np.linalg.norm(w))
        if k == steps - 1 or beta <= 1e-10 * max(abs(alphas[-1]), 1e-300):
            break
        betas.append(beta)
        basis.append(w / beta)
    return np.array(alphas), np.array(betas)


def stochastic_lanczos_quadrature(operator: LinearOperator, steps: int, probes: int, seed: int = 0) -> Quadrature:
    """The spectral density of a symmetric `operator` by `probes` Rademacher probes of `steps`
    Lanczos steps each (Ubaru, Chen & Saad 2017); costs probes x steps products."""
    rng = np.random.default_rng(seed)
    n = operator.shape[0]
    nodes, weights, traces = [], [], []
    for _ in range(probes):
        z = rng.choice([-1.0, 1.0], size=n)
        alphas, betas = lanczos_tridiagonal(operator, z, steps)
        theta, vectors = np.linalg.eigh(np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1))
        nodes.append(theta)
        weights.append(vectors[0] ** 2)
        traces.append(n * alphas[0])
    return Quadrature(nodes, weights, np.array(traces))


def spectral_density(quadrature: Quadrature, grid: np.ndarray, width: float) -> np.ndarray:
    """The SLQ density on `grid`, each node a Gaussian of standard deviation `width` (integrates to 1)."""
    nodes, weights = quadrature.pooled()
    kernel = np.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / width) ** 2) / (width * math.sqrt(2 * math.pi))
    return kernel @ weights


def top_eigenvalues(operator: LinearOperator, k: int, tol: float = 1e-4, seed: int = 0,
                    basis: int | None = None) -> np.ndarray:
    """The `k` largest (algebraic) eigenvalues of a symmetric operator, descending (scipy's eigsh,
    implicitly restarted Lanczos with `basis` vectors, scipy's default when None; relative
    tolerance `tol`)."""
    start = np.random.default_rng(seed).standard_normal(operator.shape[0])
    ncv = None if basis is None else min(operator.shape[0], max(basis, 2 * k + 1))
    values = eigsh(operator, k=k, which="LA", tol=tol, v0=start, ncv=ncv, return_eigenvectors=False)
    return np.sort(values)[::-1]


def lower_quantile(quadrature: Quadrature, floor: float, quantile: float) -> float:
    """The `quantile` of the SLQ spectral measure restricted to eigenvalues above `floor`: the
    "smallest positive" eigenvalue of an effective condition number. NaN without mass above it."""
    nodes, weights = quadrature.pooled()
    keep = nodes > floor
    if not keep.any():
        return math.nan
    order = np.argsort(nodes[keep])
    cumulative = np.cumsum(weights[keep][order]) / weights[keep].sum()
    return float(nodes[keep][order][np.searchsorted(cumulative, quantile)])


def effective_condition_number(lambda_max: float, quadrature: Quadrature, relative_floor: float,
                               quantile: float) -> tuple[float, float]:
    """(kappa, lambda_low): kappa = lambda_max / lambda_low over the positive part of the spectrum.

    Near a minimum of a non-convex loss most eigenvalues are near zero (the model has far more
    weights than the sample has labels) and some are negative, so the smallest positive eigenvalue
    is neither well defined nor measurable. lambda_low is instead the lower `quantile` of the SLQ
    spectral mass above `relative_floor * lambda_max`: the bottom of the resolved positive bulk,
    on the same footing for H and for P^(1/2) H P^(1/2). kappa is 1 when all of that mass sits at
    lambda_max."""
    low = lower_quantile(quadrature, relative_floor * lambda_max, quantile)
    return (lambda_max / low if low > 0 else math.nan), low


def alpha_exponent(kappa_preconditioned: float, kappa: float) -> float:
    """Appendix A's alpha = 1 - log kappa(PH) / log kappa(H): 1 when P flattens the spectrum, 0 when
    it leaves it as it is. NaN when kappa(H) is 1 (nothing to flatten) or either is unknown."""
    if not (kappa > 1 and kappa_preconditioned > 0):
        return math.nan
    return 1.0 - math.log(kappa_preconditioned) / math.log(kappa)


# What a run saves for the preconditioner ---------------------------------------------------------

@dataclass(frozen=True)
class OptimizerRecord:
    """An optimizer's state at a run's final weights: `optimizer` (a registry name, or LBFGS),
    `parameters` (the model's parameter names in the optimizer's index order), `state` (its
    `state_dict()`; for LBFGS, `{"s": [...], "y": [...]}`, oldest pair first, flat vectors over
    `parameters`) and `config` (the run's FinetuneConfig values, so that a run folder says what
    data and loss it was trained on)."""

    optimizer: str
    parameters: list[str]
    state: dict[str, Any]
    config: dict[str, Any]

    def save(self, folder: Path) -> Path:
        path = Path(folder) / OPTIMIZER_STATE_FILE
        write_atomically(path, lambda tmp: torch.save(self.__dict__, tmp))
        return path

    @classmethod
    def load(cls, folder: Path) -> OptimizerRecord:
        path = Path(folder) / OPTIMIZER_STATE_FILE
        if not path.is_file():
            raise ConfigError(f"{folder} holds no {OPTIMIZER_STATE_FILE}: not a run saved with its optimizer state")
        return cls(**torch.load(path, map_location="cpu", weights_only=True))


def parameter_names(model: torch.nn.Module, tensors: Sequence[torch.Tensor]) -> list[str]:
    """The names in `model` of `tensors` (by identity)."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(t)] for t in tensors]


def first_order_record(model: torch.nn.Module, optimizer: torch.optim.Optimizer, name: str,
                     config: dict[str, Any]) -> OptimizerRecord:
    """The record of a first-order run's `optimizer` (registry `name`) over `model`'s parameters."""
    tensors = [p for group in optimizer.param_groups for p in group["params"]]
    return OptimizerRecord(name, parameter_names(model, tensors), optimizer.state_dict(), config)


def lbfgs_record(model: torch.nn.Module, tensors: Sequence[torch.Tensor], pairs: Sequence[CurvaturePair],
                 config: dict[str, Any]) -> OptimizerRecord:
    """The record of the L-BFGS stage: its stored pairs over `tensors` (the flat vector's order)."""
    return OptimizerRecord(LBFGS, parameter_names(model, tensors),
                           {"s": [p.s.cpu() for p in pairs], "y": [p.y.cpu() for p in pairs]}, config)


# Preconditioners ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PreconditionerSpec:
    """How to build P^(1/2) (a symmetric positive definite LinearOperator over the flat parameter
    vector of `names`) from a saved record; `applies(record)` says whether it is this record's."""

    name: str
    description: str
    applies: Callable[[OptimizerRecord], bool]
    root: Callable[[OptimizerRecord, dict[str, torch.Tensor]], LinearOperator]
    claimed_alpha: float | None = None  # Appendix A's claim for this P (None: the paper claims none for the whole space)


def _optimizer_state(record: OptimizerRecord) -> dict[int, dict[str, Any]]:
    return record.state.get("state", {})


def _keeps_second_moment(record: OptimizerRecord) -> bool:
    return any("exp_avg_sq" in s for s in _optimizer_state(record).values())


def _has_trust_ratio(record: OptimizerRecord) -> bool:
    return record.optimizer != LBFGS and get_optimizer_spec(record.optimizer).layerwise_trust_ratio


def _per_parameter(record: OptimizerRecord) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(state, param group) of each parameter index, in index order."""
    groups = {index: group for group in record.state["param_groups"] for index in group["params"]}
    states = _optimizer_state(record)
    return [(states.get(i, {}), groups[i]) for i in range(len(record.parameters))]


def _steps_taken(state: dict[str, Any], group: dict[str, Any]) -> int:
    """Optimizer steps behind a state: torch keeps them per parameter ("step"), pytorch-optimizer
    per group ("step"), schedulefree per group ("k")."""
    for holder, key in ((state, "step"), (group, "step"), (group, "k")):
        if key in holder:
            return int(holder[key])
    raise ConfigError(f"optimizer state without a step count (keys {sorted(state)}, group {sorted(group)})")


def second_moment_denominators(record: OptimizerRecord, parameters: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Per parameter tensor, sqrt(v_hat) + eps with v_hat = v / (1 - beta2^t) the bias-corrected
    second moment (Adam's P = diag(1 / (sqrt(v_hat) + eps))); v = 0 where a tensor has no state."""
    denominators = []
    for (state, group), name in zip(_per_parameter(record), record.parameters):
        v = state.get("exp_avg_sq")
        if v is None:
            denominators.append(torch.full_like(parameters[name], group["eps"], dtype=torch.float64))
            continue
        correction = 1.0 - group["betas"][1] ** _steps_taken(state, group)
        denominators.append((v.double() / correction).sqrt() + group["eps"])
    return denominators


def trust_ratios(record: OptimizerRecord, parameters: dict[str, torch.Tensor],
                 denominators: Sequence[torch.Tensor]) -> list[float]:
    """LAMB's per-tensor phi(||theta||) / ||u|| with u = m / (sqrt(v_hat) + eps) and phi the library's
    clamp (You et al. 2020, Algorithm 2); 1 where either norm is 0, as the library does."""
    clamp = get_optimizer_spec(record.optimizer).resolve_factory().clamp
    ratios = []
    for (state, _), name, denominator in zip(_per_parameter(record), record.parameters, denominators):
        weight_norm = min(float(parameters[name].detach().double().norm()), clamp)
        update_norm = float((state["exp_avg"].double() / denominator).norm()) if "exp_avg" in state else 0.0
        ratios.append(weight_norm / update_norm if weight_norm > 0 and update_norm > 0 else 1.0)
    return ratios


def diagonal_root(diagonal: np.ndarray) -> LinearOperator:
    """P^(1/2) of a diagonal P given as its diagonal."""
    root = np.sqrt(diagonal)
    return LinearOperator(shape=(root.size, root.size), matvec=lambda v: root * np.ravel(v), dtype=np.float64)


def _flat(tensors: Sequence[torch.Tensor]) -> np.ndarray:
    return torch.cat([t.reshape(-1) for t in tensors]).cpu().numpy()


def _identity_root(record: OptimizerRecord, parameters: dict[str, torch.Tensor]) -> LinearOperator:
    size = sum(parameters[name].numel() for name in record.parameters)
    return diagonal_root(np.ones(size))


def _second_moment_root(record: OptimizerRecord, parameters: dict[str, torch.Tensor]) -> LinearOperator:
    return diagonal_root(1.0 / _flat(second_moment_denominators(record, parameters)))


def _trust_ratio_root(record: OptimizerRecord, parameters: dict[str, torch.Tensor]) -> LinearOperator:
    denominators = second_moment_denominators(record, parameters)
    scaled = [r / d for r, d in zip(trust_ratios(record, parameters, denominators), denominators)]
    return diagonal_root(_flat(scaled))


def lbfgs_root(pairs: Sequence[CurvaturePair]) -> LinearOperator:
    """H_k^(1/2) of the L-BFGS inverse-Hessian approximation of `pairs` (oldest first).

    H_k acts as gamma I (gamma = s'y / y'y of the newest pair) on the complement of the span of the
    pairs, and maps that span Q into itself; so with Q orthonormal and Q'H_kQ = V diag(mu) V',
    H_k^(1/2) = sqrt(gamma) (I - QQ') + Q V diag(sqrt mu) V' Q'. Q'H_kQ costs 2m two-loop
    recursions (Nocedal & Wright, Alg. 7.4)."""
    newest = pairs[-1]
    gamma = float(newest.s.double() @ newest.y.double()) / float(newest.y.double() @ newest.y.double())
    span = torch.stack([v.double() for p in pairs for v in (p.s, p.y)], dim=1)
    q, _ = torch.linalg.qr(span)
    hq = torch.stack([-two_loop_direction(q[:, j], pairs) for j in range(q.shape[1])], dim=1)
    mu, v = torch.linalg.eigh(0.5 * (q.T @ hq + hq.T @ q))
    inner = (v * mu.clamp(min=0).sqrt()) @ v.T
    q_np, inner_np = q.numpy(), inner.numpy()

    def matvec(x: np.ndarray) -> np.ndarray:
        x = np.ravel(x)
        projected = q_np.T @ x
        return math.sqrt(gamma) * (x - q_np @ projected) + q_np @ (inner_np @ projected)

    return LinearOperator(shape=(q_np.shape[0],) * 2, matvec=matvec, dtype=np.float64)


def _lbfgs_root(record: OptimizerRecord, parameters: dict[str, torch.Tensor]) -> LinearOperator:
    pairs = [CurvaturePair(s.double(), y.double(), 1.0 / float(s.double() @ y.double()))
             for s, y in zip(record.state["s"], record.state["y"])]
    if not pairs:
        raise ConfigError("the L-BFGS record holds no curvature pairs (a stage that took no step)")
    return lbfgs_root(pairs)


PRECONDITIONERS: dict[str, PreconditionerSpec] = {}


def register(spec: PreconditionerSpec) -> PreconditionerSpec:
    PRECONDITIONERS[spec.name] = spec
    return spec


# Tried in order: the first that applies is the record's.
register(PreconditionerSpec(
    "lbfgs_two_loop", "P = H_k, L-BFGS's inverse-Hessian approximation from the stage's saved pairs",
    applies=lambda record: record.optimizer == LBFGS, root=_lbfgs_root))  # H^-1 claimed on its Krylov subspace only
register(PreconditionerSpec(
    "trust_ratio", "P = diag(phi(||theta||) / ||u||) per tensor x diag(1 / (sqrt(v_hat) + eps)) (LAMB)",
    applies=_has_trust_ratio, root=_trust_ratio_root, claimed_alpha=1.0))
register(PreconditionerSpec(
    "second_moment", "P = diag(1 / (sqrt(v_hat) + eps)), v_hat the bias-corrected second moment (Adam family, "
    "ScheduleFree's own)", applies=_keeps_second_moment, root=_second_moment_root, claimed_alpha=1.0))
register(PreconditionerSpec(
    "identity", "P = I (SGD: no second moment kept)", applies=lambda record: True, root=_identity_root,
    claimed_alpha=0.0))


def preconditioner_for(record: OptimizerRecord) -> PreconditionerSpec:
    """The first entry of PRECONDITIONERS that applies to `record`."""
    return next(spec for spec in PRECONDITIONERS.values() if spec.applies(record))


def preconditioned(hessian: LinearOperator, root: LinearOperator) -> LinearOperator:
    """P^(1/2) H P^(1/2): symmetric, with the spectrum of P H."""
    return aslinearoperator(root) @ aslinearoperator(hessian) @ aslinearoperator(root)
