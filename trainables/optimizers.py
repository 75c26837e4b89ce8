"""The registry of first-order optimizers compared by the study.

Following the paper (Liu, Wang, Zhao, arXiv 2512.05489, Sec. 2), every optimizer is read as a
preconditioner P_t applied to the gradient g_t:  theta_{t+1} = theta_t - lr_t * P_t m_t  (m_t a
momentum of g_t). Each spec's docstring gives its P_t. Adding an optimizer is one `register` call.

Code elsewhere branches on the capability flags, never on names:
- `has_train_eval_modes`: the optimizer keeps two weight sequences and must be switched with the
  model (`optimizer.train()` before steps, `optimizer.eval()` before evaluating or saving);
- `supports_schedule`: a learning-rate schedule may be layered on top (not for ScheduleFree, whose
  averaging replaces the schedule).
Weight decay: 0.01 (decoupled) for the AdamW-type optimizers (AdamW, LAMB, ScheduleFree), 0 for the
others, unless the run's config sets `weight_decay`.
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Union

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

    def build(self, params: Iterable[torch.nn.Parameter], *, lr: float, weight_decay: float | None = None,
              **hyper: Any) -> torch.optim.Optimizer:
        """The optimizer; `weight_decay=None` keeps the spec's default (0 unless it names one)."""
        kwargs = {"weight_decay": 0.0, **self.defaults, **hyper}
        if weight_decay is not None:
            kwargs["weight_decay"] = weight_decay
        return self.resolve_factory()(params, lr=lr, **kwargs)

    def resolve_factory(self) -> Callable[..., torch.optim.Optimizer]:
        return pkgutil.resolve_name(self.factory) if isinstance(self.factory, str) else self.factory


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
    preconditioner="P_t = I (heavy-ball momentum 0.9 on g_t; nesterov configurable). Robbins & Monro 1951.",
    defaults={"momentum": 0.9, "nesterov": False, **TORCH_FOREACH},
))
register(OptimizerSpec(
    name="adam",
    factory="torch.optim:Adam",
    preconditioner="P_t = diag(sqrt(v_hat_t) + eps)^-1, v_t an EMA of g_t^2; weight decay enters the "
    "gradient (L2). Kingma & Ba 2015.",
    defaults=TORCH_FOREACH,
))
register(OptimizerSpec(
    name="adamw",
    factory="torch.optim:AdamW",
    preconditioner="P_t = diag(sqrt(v_hat_t) + eps)^-1 as Adam, with decoupled weight decay "
    "theta <- theta (1 - lr lambda), lambda = 0.01 by default. Loshchilov & Hutter 2019.",
    defaults={"weight_decay": 1e-2, **TORCH_FOREACH},
))
register(OptimizerSpec(
    name="radam",
    factory="torch.optim:RAdam",
    preconditioner="P_t = r_t diag(sqrt(v_hat_t) + eps)^-1 with the variance rectification r_t; "
    "P_t = I (SGD with momentum) while the variance estimate is intractable. Liu et al. 2020.",
    defaults=TORCH_FOREACH,
))
register(OptimizerSpec(
    name="lamb",
    factory="pytorch_optimizer:Lamb",
    preconditioner="P_t = (||theta|| / ||u_t||) diag(sqrt(v_hat_t) + eps)^-1 per layer: Adam's "
    "direction u_t (decoupled weight decay 0.01 included) rescaled by a layer-wise trust ratio. You et al. 2020.",
    defaults={"weight_decay": 1e-2},
))
register(OptimizerSpec(
    name="ranger",
    factory="pytorch_optimizer:Ranger",
    preconditioner="RAdam's P_t on fast weights; every k=6 steps the slow weights move alpha=0.5 "
    "toward them (Lookahead, Zhang et al. 2019). Gradient centralisation off, as in the paper.",
    defaults={"use_gc": False},
))
register(OptimizerSpec(
    name="schedulefree",
    factory="schedulefree:AdamWScheduleFree",
    preconditioner="AdamW's P_t applied at an interpolation y_t of the iterate z_t and its running "
    "average x_t; evaluation uses x_t, so no schedule is needed; decoupled weight decay 0.01 as AdamW. "
    "Defazio et al. 2024.",
    defaults={"weight_decay": 1e-2},
    has_train_eval_modes=True,
    supports_schedule=False,
))
