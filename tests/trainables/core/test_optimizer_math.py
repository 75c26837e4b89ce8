"""Each registry entry's update rule, checked against the paper's equations on small problems.

The loss going down on MACE (test_optimizers.py) does not show that an optimizer is the one the
paper names: a plain reference implementation of each rule is driven with the same gradients as the
registry's optimizer and the two must agree, and every entry must descend from its first step on a
convex quadratic (the library's default Ranger climbed for five steps).
"""

import ast
import re

import pytest
import schedulefree
import torch

from trainables.core.config import FinetuneConfig
from trainables.core.optimizers import OPTIMIZERS, get_optimizer_spec
from trainables.errors import ConfigError

DIM, LR, STEPS = 50, 1e-2, 30


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return (x**2).sum()


def start_point(seed: int = 0, shape=(DIM,)) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


def losses_along(name: str, steps: int, lr: float = LR) -> list[float]:
    """f(x_t) for t = 0..steps of the registry's optimizer on f(x) = ||x||^2, at the weights a model
    would be evaluated with (ScheduleFree's average x_t, in its eval mode)."""
    x, spec = start_point(), get_optimizer_spec(name)
    optimizer = spec.build([x], lr=lr)
    losses = [float(quadratic(x.detach()))]
    for _ in range(steps):
        if spec.has_train_eval_modes:
            optimizer.train()
        optimizer.zero_grad()
        quadratic(x).backward()
        optimizer.step()
        if spec.has_train_eval_modes:
            optimizer.eval()
        losses.append(float(quadratic(x.detach())))
    return losses


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_descends_from_its_first_step_on_a_convex_quadratic(name):
    losses = losses_along(name, STEPS)
    first = losses[:6]  # steps 1-5: RAdam's intractable-variance phase, before Ranger's first Lookahead sync
    assert all(b < a for a, b in zip(first, first[1:])), f"{name}: {[round(v, 3) for v in first]}"
    assert losses[-1] < 0.9 * losses[0], f"{name}: {losses[0]:.3f} -> {losses[-1]:.3f}"


def drive(optimizer: torch.optim.Optimizer, x: torch.nn.Parameter, steps: int, seed: int = 1) -> list[torch.Tensor]:
    """Steps on a fixed random quadratic 0.5 x'Ax - b'x with A diagonal in [0.5, 5]; the iterates."""
    generator = torch.Generator().manual_seed(seed)
    a = 0.5 + 4.5 * torch.rand(x.shape, generator=generator, dtype=x.dtype)
    b = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    iterates = []
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * (a * x * x).sum() - (b * x).sum()).backward()
        optimizer.step()
        iterates.append(x.detach().clone())
    return iterates


def test_sgd_is_plain_sgd_and_momentum_is_its_own_entry():
    x = start_point()
    iterates = drive(get_optimizer_spec("sgd").build([x], lr=LR), x, 1)
    reference = start_point()
    reference_iterates = drive(torch.optim.SGD([reference], lr=LR, momentum=0.0), reference, 1)
    torch.testing.assert_close(iterates[0], reference_iterates[0])
    assert get_optimizer_spec("sgd").effective_defaults()["momentum"] == 0.0
    assert get_optimizer_spec("sgd_momentum").effective_defaults()["momentum"] == 0.9


class LookaheadReference:
    """Zhang et al. 2019, Algorithm 1: every k inner steps, slow += alpha (fast - slow); fast = slow."""

    def __init__(self, inner: torch.optim.Optimizer, k: int, alpha: float):
        self.inner, self.k, self.alpha, self.steps = inner, k, alpha, 0
        self.slow = [p.detach().clone() for group in inner.param_groups for p in group["params"]]

    def zero_grad(self):
        self.inner.zero_grad()

    @torch.no_grad()
    def step(self):
        self.inner.step()
        self.steps += 1
        if self.steps % self.k == 0:
            params = [p for group in self.inner.param_groups for p in group["params"]]
            for slow, fast in zip(self.slow, params):
                slow.add_(fast - slow, alpha=self.alpha)
                fast.copy_(slow)


def test_ranger_is_the_radam_entry_plus_lookahead():
    """The paper's Eq. 10: RAdam (with the radam entry's betas and eps) wrapped by Lookahead."""
    x, reference = start_point(), start_point()
    ranger = get_optimizer_spec("ranger").build([x], lr=LR)
    radam = get_optimizer_spec("radam").build([reference], lr=LR)
    iterates = drive(ranger, x, 20)
    reference_iterates = drive(LookaheadReference(radam, k=6, alpha=0.5), reference, 20)
    for step, (got, want) in enumerate(zip(iterates, reference_iterates), start=1):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9, msg=f"step {step}")


class LambReference(torch.optim.Optimizer):
    """You et al. 2020, Algorithm 2 with phi(z) = min(z, 10) and the registry's decoupled decay."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            (beta1, beta2), lr = group["betas"], group["lr"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                state["m"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                state["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                p.mul_(1 - lr * group["weight_decay"])
                direction = state["m"] / (state["v"].sqrt() + group["eps"])
                phi = p.norm().clamp(max=10.0)
                p.sub_(lr * phi / (direction.norm() + group["eps"]) * direction)


def test_lamb_moves_each_tensor_by_lr_times_its_clamped_norm():
    x, reference = start_point(shape=(5, 10)), start_point(shape=(5, 10))
    iterates = drive(get_optimizer_spec("lamb").build([x], lr=LR), x, 20)
    reference_iterates = drive(LambReference([reference], lr=LR), reference, 20)
    for step, (got, want) in enumerate(zip(iterates, reference_iterates), start=1):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9, msg=f"step {step}")
    x0, x = start_point(shape=(5, 10)).detach(), start_point(shape=(5, 10))
    first = drive(get_optimizer_spec("lamb").build([x], lr=LR, weight_decay=0.0), x, 1)[0]
    assert float((first - x0).norm()) == pytest.approx(LR * min(float(x0.norm()), 10.0), rel=1e-4)


def test_schedulefree_matches_the_packages_reference_version():
    x, reference = start_point(), start_point()
    optimizer = get_optimizer_spec("schedulefree").build([x], lr=LR)
    reference_optimizer = schedulefree.AdamWScheduleFreeReference([reference], lr=LR, weight_decay=1e-2)
    optimizer.train(), reference_optimizer.train()
    iterates = drive(optimizer, x, 20)
    reference_iterates = drive(reference_optimizer, reference, 20)
    for step, (got, want) in enumerate(zip(iterates, reference_iterates), start=1):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9, msg=f"step {step}")
    optimizer.eval(), reference_optimizer.eval()
    torch.testing.assert_close(x.detach(), reference.detach(), rtol=1e-6, atol=1e-9)


def stated_defaults(text: str) -> dict[str, object]:
    """The `name=value` pairs after "Defaults:" in an entry's text."""
    stated = text.split("Defaults:", 1)[1]
    return {k: ast.literal_eval(v.rstrip(".")) for k, v in re.findall(r"(\w+)=(\([^)]*\)|[^,\s)]+)", stated)}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_entry_states_its_exact_defaults(name):
    spec = get_optimizer_spec(name)
    stated, effective = stated_defaults(spec.preconditioner), spec.effective_defaults()
    must_state = (set(spec.defaults) - {"foreach"}) | {"weight_decay"}
    assert must_state <= set(stated), f"{name} does not state {sorted(must_state - set(stated))}"
    for key, value in stated.items():
        assert effective[key] == pytest.approx(value), f"{name}: states {key}={value}, builds {effective[key]}"


def test_a_runs_optimizer_takes_its_own_hyper_parameters():
    config = FinetuneConfig.from_dict({"optimizer": "ranger", "optimizer_hyper": {"ranger": {"k": 5, "alpha": 0.8},
                                                                                  "adam": {"eps": 1e-6}}})
    optimizer = get_optimizer_spec("ranger").build([start_point()], lr=config.lr, **config.hyper)
    assert (optimizer.defaults["k"], optimizer.defaults["alpha"]) == (5, 0.8)
    assert config.replace(optimizer="adam").hyper == {"eps": 1e-6}


@pytest.mark.parametrize("hyper, message", [
    ({"ranger": {"kk": 5}}, r"optimizer 'ranger': unknown hyper-parameter\(s\) \['kk'\]; known: .*'alpha'"),
    ({"ranger": {"alpha": 2.0}}, "optimizer 'ranger': bad hyper-parameter value"),
    ({"adamx": {"eps": 1e-6}}, "unknown optimizer 'adamx'"),
])
def test_bad_hyper_parameters_are_rejected_with_one_line(hyper, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig.from_dict({"optimizer": "ranger", "optimizer_hyper": hyper})
