"""The registry of fine-tuning methods: which weights a run trains, and on which data.

A method answers two questions, kept apart: the data (is the replay set trained on, through a
second head?) and the weights (which parameters move, at which learning rate?). Every method uses
mace's own implementation (mace-torch 0.3.16); the functions that call it are in
trainables.core.partial_training.

- `naive`: every parameter of the single-head model, at the run's lr.
- `replay`: every parameter of a two-head model whose replay head ("pt_head") is supervised on the
  replay set (`replay_samples` configurations of pre-training data; trainables.core.replay).
- `freeze`: mace's `--freeze N` (`mace.tools.scripts_utils.get_params_options`), which counts
  levels, not blocks: N >= 1 freezes the node embedding, N >= 5 also every interaction block,
  N = 6 also every product (symmetric contraction) block, so that only the readouts train. N = 2-4
  freeze what 1 does, as in mace. The parameters mace's optimizer groups leave out (the radial
  Bessel weights) stay frozen too, as in mace. Default: layers=5 (embedding and interactions
  frozen; products and readouts trained).
- `block_lr`: mace's `--lr_params_factors`: every block of mace's optimizer groups at the run's lr
  times its factor (a factor 0 leaves that block unchanged). Defaults: embedding_lr_factor=1.0,
  interactions_lr_factor=1.0, products_lr_factor=1.0, readouts_lr_factor=1.0 (mace's).
- `lora`: mace's equivariant LoRA (`mace.modules.lora.inject_lora`): every o3.Linear with irreps
  shared between input and output, every torch Linear and every e3nn fully connected layer gets a
  low-rank update scaled alpha / rank; only those updates train. At initialisation the update is
  zero (B = 0), so the model predicts what the foundation predicts. The exported model has the
  updates merged into the base weights (`merge_lora_weights`): a plain MACE model. Defaults:
  rank=4, alpha=1.0 (mace's `--lora_rank`, `--lora_alpha`). It runs eagerly (`compile = false`):
  the compiled step rebuilds the model from its mace config, which has no LoRA layers.

Combinations: replay is about the data, freeze, block_lr and LoRA about the weights, so a weight
method with `combines_with_replay` may be joined with it as `NAME+replay` (`freeze+replay`,
`block_lr+replay`, `lora+replay`): its weights rule on the two-head model (the replay head's readout
is a readout like the task head's). `naive`'s weights on the replay data are `replay` itself.
Per-method settings are `method_settings[NAME]` (a space's `[method.NAME]` tables), checked against
the entry's defaults.
Reading the registry imports no torch: a study's settings are checked before the training stack loads.
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from trainables.errors import ConfigError

REPLAY = "replay"


@dataclass(frozen=True)
class MethodSpec:
    """A named fine-tuning method and its capability flags.

    `adapt` ("module:function", `(model, **settings) -> None`) changes the model in place before
    training (freezes parameters, injects LoRA layers); `param_groups` (`(model, lr, **settings) ->
    list of torch param-group dicts`) gives the optimizer's groups, each with its own lr; `export`
    (`model -> model`) turns the trained model into a plain MACE model. None: nothing to do (every
    trainable parameter in one group at the run's lr; the model exported as it is)."""

    name: str
    trains: str
    defaults: dict[str, Any] = field(default_factory=dict)
    trains_replay_head: bool = False
    combines_with_replay: bool = False
    compiles: bool = True
    check: Callable[[Mapping[str, Any]], None] | None = None
    adapt: str | None = None
    param_groups: str | None = None
    export: str | None = None

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """Names against the defaults, types against theirs, values through the entry's `check`."""
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            raise ConfigError(f"method {self.name!r}: unknown setting(s) {unknown}; known: {sorted(self.defaults)}")
        for key, value in settings.items():
            expected = type(self.defaults[key])
            if isinstance(value, bool) or not isinstance(value, (int, float) if expected is float else expected):
                raise ConfigError(f"method {self.name!r}: {key} must be {expected.__name__}, got {value!r}")
        if self.check is not None:
            self.check({**self.defaults, **settings})

    def settings(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.defaults, **overrides}

    def resolve(self, attribute: str) -> Callable[..., Any] | None:
        path = getattr(self, attribute)
        return None if path is None else pkgutil.resolve_name(path)


@dataclass(frozen=True)
class Method:
    """A run's method: the weight method (`weights`) and whether the replay set is trained on."""

    name: str
    weights: MethodSpec
    replay: bool

    @property
    def mode(self) -> str:
        """The data side as `FinetuneConfig.mode` names it: "replay" or "naive"."""
        return REPLAY if self.replay else "naive"


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    METHODS[spec.name] = spec
    return spec


def get_method_spec(name: str) -> MethodSpec:
    """A registered method; an unknown name raises with the list of known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(known_methods())}") from None


def known_methods() -> list[str]:
    """Every name a run may give: the entries and the allowed `NAME+replay` combinations."""
    return [*METHODS, *(f"{name}+{REPLAY}" for name, spec in METHODS.items() if spec.combines_with_replay)]


def resolve_method(name: str) -> Method:
    """`name` as (weight method, replay): "freeze+replay" is freeze's weights on the replay data."""
    base, plus, data = name.partition("+")
    spec = get_method_spec(base)
    if plus and (data != REPLAY or not spec.combines_with_replay):
        raise ConfigError(f"unknown method {name!r}: {base!r} does not combine with {data!r}; "
                          f"known: {', '.join(known_methods())}")
    return Method(name=name, weights=spec, replay=spec.trains_replay_head or bool(plus))


def _check_freeze(settings: Mapping[str, Any]) -> None:
    layers = settings["layers"]
    if not 1 <= layers <= 6:
        raise ConfigError(f"method 'freeze': layers must be in 1..6 (mace's --freeze levels: 1 the embedding, "
                          f"5 the interactions too, 6 the products too), got {layers}")


def _check_block_lr(settings: Mapping[str, Any]) -> None:
    negative = {k: v for k, v in settings.items() if v < 0}
    if negative:
        raise ConfigError(f"method 'block_lr': lr factors must be >= 0, got {negative}")


def _check_lora(settings: Mapping[str, Any]) -> None:
    if settings["rank"] < 1:
        raise ConfigError(f"method 'lora': rank must be an integer >= 1, got {settings['rank']}")
    if not settings["alpha"] > 0:
        raise ConfigError(f"method 'lora': alpha must be positive, got {settings['alpha']}")


_OPS = "trainables.core.partial_training"

register(MethodSpec(
    name="naive",
    trains="Every parameter of the single-head model at the run's lr. No settings.",
))
register(MethodSpec(
    name=REPLAY,
    trains="Every parameter of a two-head model (task head and replay head 'pt_head', which is supervised on "
    "the replay set of replay_samples pre-training configurations, weight replay_weight). No settings.",
    trains_replay_head=True,
))
register(MethodSpec(
    name="freeze",
    trains="mace's --freeze N: N >= 1 freezes the node embedding, N >= 5 every interaction block, N = 6 every "
    "product block; the rest of mace's optimizer groups train at the run's lr. Defaults: layers=5.",
    defaults={"layers": 5},
    combines_with_replay=True,
    check=_check_freeze,
    adapt=f"{_OPS}:freeze_blocks",
    param_groups=f"{_OPS}:block_groups",
))
register(MethodSpec(
    name="block_lr",
    trains="mace's --lr_params_factors: each block of mace's optimizer groups at lr x its factor. Defaults: "
    "embedding_lr_factor=1.0, interactions_lr_factor=1.0, products_lr_factor=1.0, readouts_lr_factor=1.0.",
    defaults={"embedding_lr_factor": 1.0, "interactions_lr_factor": 1.0, "products_lr_factor": 1.0,
              "readouts_lr_factor": 1.0},
    combines_with_replay=True,
    check=_check_block_lr,
    adapt=f"{_OPS}:outside_blocks_frozen",
    param_groups=f"{_OPS}:block_groups",
))
register(MethodSpec(
    name="lora",
    trains="mace's inject_lora: low-rank updates (scaled alpha / rank) of every eligible linear layer train, the "
    "base weights stay; merged into them for export. Defaults: rank=4, alpha=1.0. Runs with compile = false.",
    defaults={"rank": 4, "alpha": 1.0},
    combines_with_replay=True,
    compiles=False,
    check=_check_lora,
    adapt=f"{_OPS}:inject_lora_layers",
    export=f"{_OPS}:merged_lora",
))
