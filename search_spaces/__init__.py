"""Named search spaces: data, not code.

Each space is a TOML file beside this module (a user's own space is a TOML or YAML file in the same
format, passed by path):

    description = "..."
    optimizers = ["adam", ...]        # grid: every optimizer x lr x seed (x protocol) is one trial
    lrs = [1e-3, ...]
    seeds = [0, 1, 2]
    [lr_by_optimizer]                 # grid, instead of lrs: each optimizer at its own lr
    adam = 1e-3
    methods = ["naive", "lora", ...]  # grid: fine-tuning methods (trainables.core.methods), an axis;
                                      #   the name is each row's `method` column
    [lrs_by_method]                   # grid, instead of lrs: each method's own lrs
    lora = [5e-3, 2e-2]               #   (every optimizer runs each)
    [method.lora]                     # one method's own settings (rank, alpha; layers; lr factors),
    rank = 8                          #   checked against that method
    [protocols.NAME]                  # grid: named overlays of FinetuneConfig fields on [fixed]
    schedule = "cosine"               #   (schedule, warmup_steps, ema_decay, ...), one axis of
                                      #   the grid; the name is each row's `protocol` column
    stages = ["first_order", "lbfgs"] # "lbfgs" chains an L-BFGS refinement after each trial;
                                      # "evaluate" (last) the physical properties of every model
    search = "grid"                   # or "optuna": lr drawn log-uniformly per optimizer
    num_samples = 28                  # optuna: trials in all
    adaptive = "asha"                 # stop losing cells early (study.adaptive: Ray Tune's ASHA or
    [adaptive]                        #   median rule; a cell's seeds stopped together), or a table:
    scheduler = "asha"                #   scheduler, metric, grace_period (epochs), reduction_factor,
    grace_period = 2                  #   brackets (asha), min_samples (median)
    [lr_ranges]                       # optuna: optimizer = [low, high]
    [fixed]                           # FinetuneConfig fields held fixed for every trial
    [hyper.ranger]                    # one optimizer's own hyper-parameters (k, alpha, betas, eps,
    k = 6                             #   weight_decay, ...), checked against that optimizer
    [lbfgs]                           # LBFGSConfig fields of the refinement stage, and chunk_size
    [properties]                      # the evaluate stage: PropertySettings fields (evaluators,
    md_steps = 400                    #   md_steps, ...) and, for a user's own data, the files in
                                      #   PROPERTY_FILES (structures and references)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import tomllib
import yaml

from trainables.core.config import FinetuneConfig, split_options, unknown_key_hint, unknown_keys
from trainables.core.optimizers import get_optimizer_spec
from trainables.errors import ConfigError

HERE = Path(__file__).parent
STAGES = ("first_order", "lbfgs", "evaluate")  # in this order; first_order always, the others opt-in
SEARCHES = ("grid", "optuna")
_KEYS = {"description", "optimizers", "lrs", "lr_by_optimizer", "seeds", "protocols", "methods", "lrs_by_method",
         "method", "stages", "search", "num_samples", "adaptive", "lr_ranges", "fixed", "hyper", "lbfgs", "properties"}
GRID_AXES = ("optimizer", "lr", "seed")  # config fields the grid sets: a protocol may not overlay them
METHOD_FIELDS = ("method", "mode", "method_settings")  # what `methods` and [method.NAME] set
# [properties] keys that are not PropertySettings: a user's structures and references (ASE-readable
# files). The minimum is the MD start and the geometry of vibrations / phonons at Gamma; the profile a
# scan or path in order whose stored energies are its reference; the MD reference a trajectory of
# the labeller's MD at md_temperature_K (same atoms, same order as the minimum).
PROPERTY_FILES = ("minimum_file", "cubic_cell_file", "profile_file", "md_reference_file")


@dataclass(frozen=True)
class SearchSpace:
    """Which trials a study runs; `fixed`, `hyper`, `lbfgs` and `properties` stay visible as plain dicts.

    `hyper` ({optimizer: {name: value}}) is also in `fixed` as the config's `optimizer_hyper`, so
    every trial gets the whole table and its optimizer takes its own entry. `protocols` ({name:
    {field: value}}) overlay `fixed` for every trial of their grid axis (none: one plain axis).
    `methods` is a grid axis of fine-tuning methods (none: the config's own method); `method_settings`
    ({method: {setting: value}}, the `[method.NAME]` tables) is also in `fixed` as the config's
    `method_settings`, of which each trial's method takes its own entry."""

    name: str
    description: str = ""
    optimizers: tuple[str, ...] = ()
    lrs: tuple[float, ...] = ()
    lr_by_optimizer: dict[str, float] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)
    methods: tuple[str, ...] = ()
    lrs_by_method: dict[str, tuple[float, ...]] = field(default_factory=dict)
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    stages: tuple[str, ...] = ("first_order",)
    search: str = "grid"
    num_samples: int = 1
    adaptive: dict[str, Any] = field(default_factory=dict)  # empty: every trial runs its whole budget
    lr_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    hyper: dict[str, dict[str, Any]] = field(default_factory=dict)
    lbfgs: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def has_lbfgs(self) -> bool:
        return "lbfgs" in self.stages

    @property
    def has_evaluate(self) -> bool:
        return "evaluate" in self.stages

    @property
    def property_settings(self) -> dict[str, Any]:
        """The PropertySettings fields of [properties] (without the user's files)."""
        return {k: v for k, v in self.properties.items() if k not in PROPERTY_FILES}

    @property
    def property_files(self) -> dict[str, str]:
        return {k: v for k, v in self.properties.items() if k in PROPERTY_FILES}

    @property
    def num_first_order_trials(self) -> int:
        if self.search == "optuna":
            return self.num_samples * len(self.seeds)
        if self.lrs_by_method:  # the (method, lr) pairs are one axis
            pairs = sum(len(lrs) for lrs in self.lrs_by_method.values())
            return len(self.optimizers) * pairs * len(self.seeds) * max(len(self.protocols), 1)
        lrs_each = 1 if self.lr_by_optimizer else len(self.lrs)
        axes = max(len(self.protocols), 1) * max(len(self.methods), 1)
        return len(self.optimizers) * lrs_each * len(self.seeds) * axes


def known_spaces() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def _read(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        data = yaml.safe_load(path.read_text())
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"malformed space file {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"malformed space file {path}: expected a table of keys")
    return data


def get_space(name_or_path: str) -> SearchSpace:
    """A registered space by name, or a user's TOML/YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".toml", ".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"space file not found: {path}")
        return space_from_dict(path.stem, _read(path))
    if name_or_path not in known_spaces():
        raise ConfigError(f"unknown search space {name_or_path!r}; known: {', '.join(known_spaces())} "
                          "(or a .toml/.yaml file path)")
    return space_from_dict(name_or_path, _read(HERE / f"{name_or_path}.toml"))


def space_from_dict(name: str, data: dict[str, Any]) -> SearchSpace:
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"space {name!r}: unknown key(s) {unknown}; known: {sorted(_KEYS)}")
    space = SearchSpace(
        name=name, description=data.get("description", ""),
        optimizers=tuple(data.get("optimizers", ())), lrs=tuple(float(x) for x in data.get("lrs", ())),
        lr_by_optimizer={k: float(v) for k, v in _table(name, data, "lr_by_optimizer").items()},
        seeds=tuple(int(s) for s in data.get("seeds", (0,))), protocols=_protocols(name, data),
        methods=tuple(data.get("methods", ())),
        lrs_by_method={k: tuple(float(x) for x in v) for k, v in _table(name, data, "lrs_by_method").items()},
        method_settings=_per_name_tables(name, data, "method", "method"),
        stages=tuple(data.get("stages", ("first_order",))),
        search=data.get("search", "grid"), num_samples=int(data.get("num_samples", 1)),
        adaptive=_adaptive(data.get("adaptive", {})),
        lr_ranges={k: (float(v[0]), float(v[1])) for k, v in data.get("lr_ranges", {}).items()},
        fixed=_fixed_with_tables(name, data), hyper=_hyper(name, data), lbfgs=dict(data.get("lbfgs", {})),
        properties=dict(data.get("properties", {})),
    )
    validate_space(space)
    return space


def _adaptive(value: str | dict[str, Any]) -> dict[str, Any]:
    """`adaptive = "asha"` as the table it stands for; a table as it is (checked by `check_adaptive`)."""
    return {"scheduler": value} if isinstance(value, str) else value


def _table(name: str, data: dict[str, Any], key: str) -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"space {name!r}: [{key}] must be a table")
    return table


def _protocols(name: str, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    protocols = _table(name, data, "protocols")
    if not all(isinstance(v, dict) for v in protocols.values()):
        raise ConfigError(f"space {name!r}: [protocols] must hold one table per protocol, e.g. [protocols.cosine]")
    return {protocol: dict(values) for protocol, values in protocols.items()}


def _hyper(name: str, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _per_name_tables(name, data, "hyper", "optimizer")


def _per_name_tables(name: str, data: dict[str, Any], key: str, what: str) -> dict[str, dict[str, Any]]:
    """A `[KEY.NAME]` table per optimizer or method, as plain dicts."""
    tables = data.get(key, {})
    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        example = "[hyper.ranger]" if key == "hyper" else "[method.lora]"
        raise ConfigError(f"space {name!r}: [{key}] must hold one table per {what}, e.g. {example}")
    return {entry: dict(values) for entry, values in tables.items()}


def _fixed_with_tables(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """[fixed] with the [hyper] and [method] tables as the config's `optimizer_hyper` and `method_settings`."""
    fixed = dict(data.get("fixed", {}))
    for key, what, config_key in (("hyper", "optimizer", "optimizer_hyper"), ("method", "method", "method_settings")):
        tables = _per_name_tables(name, data, key, what)
        if tables and config_key in fixed:
            raise ConfigError(f"space {name!r}: give [{key}] or fixed.{config_key}, not both")
        if tables:
            fixed[config_key] = tables
    return fixed


def check_fixed_keys(space: SearchSpace) -> None:
    """`fixed` and each protocol name FinetuneConfig fields; their values are checked once merged with
    the run's own settings (a space may fix `mode = "replay"` and leave `replay_samples` to the user's
    config; the study checks each protocol's config before its trials start)."""
    for where, values in [("[fixed]", space.fixed), *((f"[protocols.{n}]", v) for n, v in space.protocols.items())]:
        unknown = unknown_keys(FinetuneConfig, values)
        if unknown:
            raise ConfigError(f"space {space.name!r}: in {where}, unknown config key "
                              f"{unknown_key_hint(FinetuneConfig, unknown)}")
    for protocol, values in space.protocols.items():
        on_axes = sorted(set(values) & set(GRID_AXES))
        if on_axes:
            raise ConfigError(f"space {space.name!r}: [protocols.{protocol}] sets {on_axes}, which the grid sets "
                              "(optimizers, lrs, seeds)")


def _require(space: SearchSpace, ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(f"space {space.name!r}: {message}")


def validate_space(space: SearchSpace) -> None:
    check = partial(_require, space)
    check(space.search in SEARCHES, f"search must be one of {SEARCHES}, got {space.search!r}")
    check(set(space.stages) <= set(STAGES) and space.stages[:1] == ("first_order",)
          and list(space.stages) == sorted(set(space.stages), key=STAGES.index),
          f"stages must start with 'first_order' and may add 'lbfgs', then 'evaluate' (in that order), "
          f"got {list(space.stages)}")
    check(bool(space.seeds), "needs at least one seed")
    names = space.optimizers if space.search == "grid" else tuple(space.lr_ranges)
    check(bool(names), "needs optimizers (grid) or lr_ranges (optuna)")
    for name in names:
        get_optimizer_spec(name)
    if space.search == "grid":
        check_grid_lrs(space)
    check(space.search == "grid" or not space.protocols, "[protocols] needs search = 'grid'")
    for low, high in space.lr_ranges.values():
        check(0 < low < high, f"each lr range needs 0 < low < high, got {low}, {high}")
    check_fixed_keys(space)
    check(not set(space.hyper) - set(names),
          f"[hyper] names optimizer(s) {sorted(set(space.hyper) - set(names))} that the space does not run")
    check_methods(space)
    if space.has_lbfgs:
        split_options(space.lbfgs)
    check(space.has_evaluate or not space.properties, "[properties] needs 'evaluate' in stages")
    if space.has_evaluate:
        check_properties(space)
    if space.adaptive:
        check_adaptive(space)


def check_adaptive(space: SearchSpace) -> None:
    """[adaptive] against study.adaptive (imported here: it imports Ray Tune's schedulers)."""
    from study.adaptive import AdaptiveSettings

    AdaptiveSettings.from_dict(space.name, space.adaptive)


def check_methods(space: SearchSpace) -> None:
    """`methods` are known names (or allowed NAME+replay combinations), run on a grid, and not also
    fixed; each [method.NAME] table names a method the space runs and is checked against it."""
    from trainables.core.methods import get_method_spec, resolve_method

    check = partial(_require, space)
    check(not space.methods or space.search == "grid", "methods need search = 'grid'")
    check(len(set(space.methods)) == len(space.methods), f"methods lists a method twice: {list(space.methods)}")
    fixed_method = sorted(set(space.fixed) & {"method", "mode"})
    check(not (space.methods and fixed_method), f"methods is the grid's axis: drop {fixed_method} from [fixed]")
    for protocol, values in space.protocols.items():
        on_methods = sorted(set(values) & set(METHOD_FIELDS))
        check(not on_methods, f"[protocols.{protocol}] sets {on_methods}: give methods and [method.NAME] instead")
    named = space.methods or (space.fixed.get("method") or space.fixed.get("mode") or "naive",)
    run = {resolve_method(method).weights.name for method in named}
    check(not set(space.method_settings) - run,
          f"[method] names method(s) {sorted(set(space.method_settings) - run)} that the space does not run")
    for method, settings in space.method_settings.items():
        get_method_spec(method).check_settings(settings)


def check_grid_lrs(space: SearchSpace) -> None:
    """A grid gives `lrs` (every optimizer), `lr_by_optimizer` (one each, for exactly its optimizers)
    or `lrs_by_method` (a list each, for exactly its methods)."""
    check = partial(_require, space)
    given = [name for key, name in (("lrs", "lrs"), ("lr_by_optimizer", "[lr_by_optimizer]"),
                                    ("lrs_by_method", "[lrs_by_method]")) if getattr(space, key)]
    check(len(given) <= 1, f"give {' or '.join(given)}, not both")
    if space.lrs_by_method:
        check(set(space.lrs_by_method) == set(space.methods),
              f"[lrs_by_method] must name each of the methods {list(space.methods)} once, "
              f"got {sorted(space.lrs_by_method)}")
        lrs = [lr for each in space.lrs_by_method.values() for lr in each] or [0.0]
    elif space.lr_by_optimizer:
        check(set(space.lr_by_optimizer) == set(space.optimizers),
              f"[lr_by_optimizer] must name each of the optimizers {list(space.optimizers)} once, "
              f"got {sorted(space.lr_by_optimizer)}")
        lrs = list(space.lr_by_optimizer.values())
    else:
        lrs = list(space.lrs)
    check(bool(lrs) and all(lr > 0 for lr in lrs), f"lrs must be positive, got {lrs}")


def check_properties(space: SearchSpace) -> None:
    """[properties] against PropertySettings (imported here: ase and scipy take seconds, and only a
    space with an evaluate stage needs them)."""
    from trainables.properties import settings_from_dict

    try:
        settings_from_dict(space.property_settings)
    except ConfigError as err:
        raise ConfigError(f"space {space.name!r}: [properties]: {err}") from None
    for key, path in space.property_files.items():
        if not isinstance(path, str) or not Path(path).is_file():
            raise ConfigError(f"space {space.name!r}: [properties] {key} = {path!r} is not a file")
