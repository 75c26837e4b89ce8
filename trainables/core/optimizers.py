"""The registry of first-order optimizers compared by the study.

Following the paper (Liu, Wang, Zhao, arXiv 2512.05489, Sec. 2), every optimizer is read as a
preconditioner P_t applied to the gradient g_t:  theta_{t+1} = theta_t - lr_t * P_t m_t  (m_t a
momentum of g_t). Each spec's docstring gives its P_t. Adding an optimizer is one `register` call.

Code elsewhere branches on the capability flags, never on names:
- `has_train_eval_modes`: the optimizer keeps two weight sequences and must be switched with the
  model (`optimizer.train()` before steps, `optimizer.eval()` before evaluating or saving);
- `supports_schedule`: a decaying learning-rate schedule (`schedule = "cosine"` or `"plateau"`,
  trainables.core.schedules) may be layered on top. Not for ScheduleFree: its averaging replaces the
  schedule, and its authors advise against combining the two (mace skips its plateau schedule for
  it too), so under either schedule it runs at its constant lr;
- `warmup_argument`: the constructor argument through which the optimizer takes a linear warm-up of
  the run's `warmup_steps` itself (ScheduleFree's `warmup_steps`, which also weights its average by
  the warmed-up lr); None: the warm-up is part of the lr schedule;
- `layerwise_trust_ratio`: P_t carries a per-tensor trust ratio (LAMB), which the curvature
  measurement (trainables.core.curvature) rebuilds from the saved state.
An EMA of the weights (`ema_decay`, trainables.core.averaging) applies to every optimizer; for one
with train/eval modes it averages the weights the optimizer evaluates (ScheduleFree's x_t), an
average on top of its own.
Weight decay: 0.01 (decoupled) for the AdamW-type optimizers (AdamW, LAMB, ScheduleFree), 0 for the
others, unless the run's config sets `weight_decay`. Each entry's text states its exact defaults (a test
checks them against `effective_defaults`, the factory's signature overlaid with the entry's own).
A run's hyper-parameters (`check_hyper`) must be named in the factory's signature or the entry's
defaults; anything else is rejected with the list of known names.
"""

from __future__ import annotations

import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Union

from trainables.errors import ConfigError

if TYPE_CHECKING:
    import torch

# A factory is a callable, or the "module:attribute" path of one. The built-in entries use paths so
# that reading the registry (names and flags, as the CLI does to validate a study) imports no torch.
Factory = Union[Callable[..., "torch.optim.Optimizer"], str]


@dataclass(frozen=True)
class OptimizerSpec:
    """A named optimizer: factory `(params, *, lr, weight_decay, **hyper)` plus capability flags.

    `factory` is the callable or its "module:attribute" path, imported on the first `build`."""

    name: str
    factory: Factory
    preconditioner: str
    defaults: dict[str, Any] = field(default_factory=dict)
    has_train_eval_modes: bool = False
    supports_schedule: bool = True
    warmup_argument: str | None = None
    layerwise_trust_ratio: bool = False

    def build(self, params: Iterable[torch.nn.Parameter], *, lr: float, weight_decay: float | None = None,
              **hyper: Any) -> torch.optim.Optimizer:
        """The optimizer; `weight_decay=None` keeps the spec's default (0 unless it names one)."""
        kwargs = {"weight_decay": 0.0, **self.defaults, **hyper}
        if weight_decay is not None:
            kwargs["weight_decay"] = weight_decay
        return self.resolve_factory()(params, lr=lr, **kwargs)

    def resolve_factory(self) -> Callable[..., torch.optim.Optimizer]:
        return pkgutil.resolve_name(self.factory) if isinstance(self.factory, str) else self.factory

    def _signature_defaults(self) -> dict[str, Any]:
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        parameters = inspect.signature(self.resolve_factory()).parameters.values()
        return {p.name: p.default for p in parameters if p.kind in named and p.name not in ("params", "lr")}

    def effective_defaults(self) -> dict[str, Any]:
        """Every hyper-parameter the optimizer is built with when a run sets none (imports the factory)."""
        return {**self._signature_defaults(), **self.defaults}

    def check_hyper(self, hyper: Mapping[str, Any], lr: float) -> None:
        """Reject names the factory does not take, and values it refuses (built once on a dummy tensor)."""
        import torch

        known = sorted(self.effective_defaults())
        unknown = sorted(set(hyper) - set(known))
        if unknown:
            raise ConfigError(f"optimizer {self.name!r}: unknown hyper-parameter(s) {unknown}; known: {known}")
        try:
            self.build([torch.nn.Parameter(torch.zeros(1))], lr=lr, **hyper)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"optimizer {self.name!r}: bad hyper-parameter value: {err}") from None


OPTIMIZERS: dict[str, OptimizerSpec] = {}

# torch's own optimizers update every parameter tensor in one multi-tensor (foreach) call. torch
# picks that only on GPUs; on a CPU it loops in Python, which took 2.5 ms of a ~30 ms Adam step on
# the embedded default (1.1 ms foreach), with bit-identical weights.
TORCH_FOREACH = {"foreach": True}


def register(spec: OptimizerSpec) -> OptimizerSpec:
    OPTIMIZERS[spec.name] = spec
    return spec


def get_optimizer_spec(name: str) -> OptimizerSpec:
    """Look up a registered optimizer; an unknown name raises with the list of known ones."""
    try:
        return OPTIMIZERS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}") from None


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], *, lr: float,
                    weight_decay: float | None = None, **hyper: Any) -> torch.optim.Optimizer:
    return get_optimizer_spec(name).build(params, lr=lr, weight_decay=weight_decay, **hyper)


register(OptimizerSpec(
    name="sgd",
    factory="torch.optim:SGD",
    preconditioner="P_t = I, m_t = g_t: plain SGD, theta <- theta - lr g_t (the paper's Eq. 3). "
    "Defaults: momentum=0, weight_decay=0. Robbins & Monro 1951.",
    defaults={"momentum": 0.0, **TORCH_FOREACH},
))
register(OptimizerSpec(
    name="sgd_momentum",
    factory="torch.optim:SGD",
    preconditioner="P_t = I on heavy-ball momentum m_t = mu m_{t-1} + g_t. Defaults: momentum=0.9, "
    "dampening=0, nesterov=False, weight_decay=0. Polyak 1964.",
    defaults={"momentum": 0.9, "dampening": 0.0, "nesterov": False, **TORCH_FOREACH},
))
register(OptimizerSpec(
    name="adam",
    factory="torch.optim:Adam",
    preconditioner="P_t = diag(sqrt(v_hat_t) + eps)^-1 on m_hat_t, v_t an EMA of g_t^2; weight decay "
    "enters the gradient (L2). Defaults: betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False. "
    "Kingma & Ba 2015.",
    defaults=TORCH_FOREACH,
))
register(OptimizerSpec(
    name="adamw",
    factory="torch.optim:AdamW",
    preconditioner="P_t = diag(sqrt(v_hat_t) + eps)^-1 as Adam, with decoupled weight decay "
    "theta <- theta (1 - lr lambda). Defaults: betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, "
    "amsgrad=False. Loshchilov & Hutter 2019.",
    defaults={"weight_decay": 1e-2, **TORCH_FOREACH},
))
register(OptimizerSpec(
    name="radam",
    factory="torch.optim:RAdam",
    preconditioner="P_t = r_t diag(sqrt(v_hat_t) + eps)^-1 on m_hat_t with the variance rectification "
    "r_t while rho_t > 5; P_t = I (theta <- theta - lr m_hat_t, SGD with momentum) while the variance "
    "estimate is intractable (the first 5 steps at beta2 = 0.999). Defaults: betas=(0.9, 0.999), "
    "eps=1e-8, weight_decay=0. Liu et al. 2020.",
    defaults=TORCH_FOREACH,
))
register(OptimizerSpec(
    name="lamb",
    factory="pytorch_optimizer:Lamb",
    preconditioner="P_t = (phi(||theta||) / ||u_t||) diag(sqrt(v_t) + eps)^-1 per parameter tensor, "
    "u_t = m_t / (sqrt(v_t) + eps) Adam's direction and phi(z) = min(z, 10) (the library's clamp): every "
    "tensor moves lr phi(||theta||) per step, as in You et al. 2020, Algorithm 2. Weight decay "
    "theta <- theta (1 - lr lambda) is applied before the step, outside the trust ratio (AdamW-style; "
    "Algorithm 2 adds lambda theta inside u_t). Defaults: betas=(0.9, 0.999), eps=1e-6, "
    "weight_decay=0.01, adam_debias=True (the step is lr, not lr / (1 - beta1^t): the library's default "
    "moves a tensor 10x lr phi at the first step), weight_decouple=True, grad_averaging=True, "
    "pre_norm=False. You et al. 2020.",
    defaults={"weight_decay": 1e-2, "adam_debias": True, "weight_decouple": True},
    layerwise_trust_ratio=True,
))
register(OptimizerSpec(
    name="ranger",
    factory="pytorch_optimizer:Ranger",
    preconditioner="RAdam's P_t (the radam entry: P_t = I on m_hat_t while the variance estimate is "
    "intractable) on fast weights; every k steps the slow weights move alpha toward them and the fast "
    "weights restart there (Lookahead, Zhang et al. 2019): the paper's Eq. 10, RAdam + Lookahead. "
    "Defaults: k=6, alpha=0.5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, degenerated_to_sgd=True "
    "(the library's default False steps uphill, theta <- theta + lr m_hat_t, for the first 5 steps), "
    "use_gc=False (no gradient centralisation, as in the paper). Wright 2019.",
    defaults={"k": 6, "alpha": 0.5, "betas": (0.9, 0.999), "eps": 1e-8, "degenerated_to_sgd": True,
              "use_gc": False},
))
register(OptimizerSpec(
    name="schedulefree",
    factory="schedulefree:AdamWScheduleFree",
    preconditioner="AdamW's P_t applied at an interpolation y_t = (1 - beta1) z_t + beta1 x_t of the "
    "iterate z_t and its running average x_t; evaluation uses x_t, so no schedule is needed (a run's "
    "cosine or plateau schedule leaves its lr constant; its warm-up goes to warmup_steps). Defaults: "
    "betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01 (decoupled, at y_t), warmup_steps=0, r=0, "
    "weight_lr_power=2. Defazio et al. 2024.",
    defaults={"weight_decay": 1e-2},
    has_train_eval_modes=True,
    supports_schedule=False,
    warmup_argument="warmup_steps",
))
