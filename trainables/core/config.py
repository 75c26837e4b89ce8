"""One configuration object for a fine-tuning run, validated once, flowing from the CLI to the trainable.

`FinetuneConfig.from_dict` is the single entry point: it rejects unknown keys, checks ranges and
returns a frozen dataclass. `to_dict` gives the plain dict that Ray passes around as `config`.
`LBFGSConfig` holds the refinement stage's hyper-parameters (trainables.core.lbfgs) the same way.
Neither imports torch, so a study's settings are checked before the training stack loads.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from trainables.core.methods import Method, get_method_spec, known_methods, resolve_method
from trainables.core.optimizers import OPTIMIZERS
from trainables.core.schedules import SCHEDULES
from trainables.errors import ConfigError

DTYPES = ("float32", "float64")
MODES = ("naive", "replay")
REPLAY_SELECTIONS = ("fps", "random")
E0S_SOURCES = ("auto", "average", "estimated", "foundation")
DAMPING_RULES = ("powell", "paper")
DEFAULT_CHUNK = 32  # configurations per chunk of the L-BFGS objective (trainables.stages.refine)


def setting(default: Any, description: str, choices: Any = None) -> Any:
    """A `FinetuneConfig` field: its default (a type such as `dict`: an empty one per config), a
    one-line description (the command line's help) and, for a closed set of values, `choices`: a
    tuple, a registry (its names) or a function returning the names."""
    metadata = {"help": description, "choices": choices}
    if isinstance(default, type):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def choices_of(field_: dataclasses.Field) -> tuple[str, ...] | None:
    """The values a field allows, where they are a closed set."""
    choices = field_.metadata.get("choices")
    if choices is None:
        return None
    return tuple(choices() if callable(choices) else choices)


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything one fine-tuning run needs.

    Data: either `system` (an embedded default, see `trainables.embedded`) or `train_file` with
    optional `valid_file` (else a seeded split of `valid_fraction`), named `test_files`
    ({name: path}) and `e0s_file` (isolated-atom energies). Label keys default to auto-detection
    (mace-style `REF_*` first, then labels stored by ASE's calculator). Training and validation
    structures need energies and forces; a test set is scored on the labels it has (energies only:
    a NaN force RMSE, and the reverse). `profile_tests` names test sets that are a path or a scan
    (in order), also scored on relative energies; an embedded system names its own (the dihedral scan).
    Relative energies are taken within curves: structures of one composition and one value of
    `profile_group_key` in the file (`config_type` by default; see `trainables.core.data.profile_curves`).
    `e0s` says where the task head's isolated-atom energies come from: "auto" (`e0s_file`, else the
    training file's IsolatedAtom entries, else the foundation's), "average" (fitted to the training
    set's energies by least squares, mace's `E0s="average"`), "estimated" (the foundation's, shifted
    per element to fit its predictions to the training energies, mace's `E0s="estimated"`: for a
    foundation of another level of theory), or "foundation".
    Foundation: a local model file, a mace_mp name, or `embedded:SYSTEM` (an embedded system's
    foundation, whose pre-training corpus then is the default replay data for a `train_file`);
    None means the embedded system's own.
    Loss (Eq. 1): `energy_weight` w_E, `forces_weight` w_F, `stress_weight` w_S; energies per atom
    when `per_atom_energy` (as mace trains).
    Optimizer: `weight_decay` None keeps the optimizer's own default (see trainables.core.optimizers);
    `optimizer_hyper` holds hyper-parameters per optimizer name ({"ranger": {"k": 5}}, a space's
    `[hyper.NAME]` tables), of which the run's optimizer takes its own, and `optimizer_kwargs` go on
    top for whichever optimizer runs (`hyper`). Names and values are checked against the optimizer.
    Budget: `epochs` (or `max_steps` when set), `batch_size`, gradient clipping.
    Protocol, the same for every optimizer: `schedule` of the lr, "constant", "cosine" or
    "plateau" (mace's default, ReduceLROnPlateau by `plateau_factor` after `plateau_patience`
    validations without improvement), after a linear warm-up of `warmup_steps` optimizer steps
    (trainables.core.schedules); `ema_decay` (None or 0: off) keeps an exponential moving average of
    the weights, which the run validates, checkpoints and scores (mace's `--ema --ema_decay 0.99`;
    trainables.core.averaging). How each applies to ScheduleFree is in trainables.core.optimizers.
    Curves: the validation set is scored at every epoch's end and, with `val_every_steps`, also
    every that many optimizer steps within epochs (for time-to-target; training is unchanged).
    Method (trainables.core.methods): `method` names which weights train and on which
    data: `naive`, `replay`, `freeze`, `block_lr`, `lora`, or a weight method with replay
    (`freeze+replay`, ...); `method_settings` holds settings per method name ({"lora": {"rank": 8}},
    a space's `[method.NAME]` tables), of which the run's method takes its own. `mode` is the data
    side it implies: `naive` fine-tunes the foundation's single head; `replay` trains a two-head
    model whose replay head ("pt_head") is supervised on `replay_samples` configurations of
    pre-training data (`replay_file`, else the embedded system's corpus) chosen by
    `replay_selection` (seeded by `split_seed`), each weighted `replay_weight` (c_n in Eq. 1). An
    older config's `mode` alone names the method (`mode = "replay"` is `method = "replay"`); given
    with `method`, it must agree. With `replay_samples` set, runs of every method score the same
    replay set (trained on or not), so forgetting compares across methods.
    Speed: `compile` runs the training step through `torch.compile` (trainables.speed.compiled; same
    results to float rounding, ~1.8x faster steps on a CPU after a few seconds of compilation), and
    scoring through it in batches of at most `batch_size` and `eval_batch_size` configurations;
    without it, scoring runs eagerly in batches of `eval_batch_size`. `compile_aside` (with
    `compile`) takes eager steps while a second process compiles the step on a cold compiler cache,
    then the compiled step (trainables.speed.background_compile): for foundation-sized models, whose
    first compile takes minutes.
    """

    system: str | None = setting(None, "an embedded system (trainables.embedded; default: this machine's)")
    data_size: str = setting("full", "the embedded system's size: full, or smoke (tiny, for tests)")
    train_file: str | None = setting(None, "training structures (any ASE-readable file; extxyz with energy= / forces)")
    valid_file: str | None = setting(None, "validation structures (default: a seeded split of the training file)")
    test_files: dict[str, str] = setting(dict, "named test sets {name: path} (--test NAME=PATH)")
    profile_tests: list[str] = setting(list, "test sets that are paths or scans, also scored on relative energies")
    profile_group_key: str | None = setting("config_type", "the info key splitting a profile test set into curves")
    e0s_file: str | None = setting(None, "isolated-atom energies (an extxyz of single atoms)")
    e0s: str = setting("auto", "where the task head's E0s come from", choices=E0S_SOURCES)
    energy_key: str | None = setting(None, "the energy label's key (default: REF_energy, then ASE's)")
    forces_key: str | None = setting(None, "the forces label's key (default: REF_forces, then ASE's)")
    stress_key: str | None = setting(None, "the stress label's key (default: REF_stress, then ASE's)")
    valid_fraction: float = setting(0.1, "the validation split's fraction without a valid_file, in (0, 1)")
    split_seed: int = setting(0, "seed of the validation split and of the replay selection")
    foundation: str | None = setting(None, "a model file, a mace_mp name or embedded:SYSTEM (default: the system's)")

    method: str | None = setting(None, "which weights train, on which data (default: naive)", choices=known_methods)
    method_settings: dict[str, dict[str, Any]] = setting(dict, "settings per method name ({lora = {rank = 8}})")
    mode: str | None = setting(None, "the data side of the method (older configs: alone, it names the method)",
                               choices=MODES)
    replay_file: str | None = setting(None, "pre-training structures for the replay head")
    replay_samples: int | None = setting(None, "pre-training configurations replayed (and scored)")
    replay_selection: str = setting("fps", "how the replay configurations are chosen", choices=REPLAY_SELECTIONS)
    replay_weight: float = setting(1.0, "weight of each replay configuration in Eq. 1 (c_n)")

    optimizer: str = setting("adam", "the first-order optimizer", choices=OPTIMIZERS)
    lr: float = setting(1e-3, "peak learning rate")
    weight_decay: float | None = setting(None, "weight decay (default: the optimizer's own)")
    optimizer_kwargs: dict[str, Any] = setting(dict, "hyper-parameters of whichever optimizer runs (--opt KEY=VALUE)")
    optimizer_hyper: dict[str, dict[str, Any]] = setting(dict, "hyper-parameters per optimizer name")
    schedule: str = setting("constant", "the lr schedule after the warm-up", choices=SCHEDULES)
    warmup_steps: int = setting(0, "optimizer steps of linear lr warm-up")
    plateau_factor: float = setting(0.8, "plateau schedule: lr factor at each reduction, in (0, 1)")
    plateau_patience: int = setting(50, "plateau schedule: validations without improvement before a reduction")
    ema_decay: float | None = setting(None, "decay of the weights' moving average, in [0, 1) (0 or none: off)")

    epochs: int = setting(10, "epochs of training")
    max_steps: int | None = setting(None, "optimizer steps of training instead of whole epochs")
    val_every_steps: int | None = setting(None, "also validate every this many optimizer steps within epochs")
    batch_size: int = setting(5, "configurations per training batch")
    clip_grad_norm: float | None = setting(10.0, "gradient clipping at this norm (none: off)")

    energy_weight: float = setting(1.0, "w_E of Eq. 1")
    forces_weight: float = setting(100.0, "w_F of Eq. 1")
    stress_weight: float = setting(0.0, "w_S of Eq. 1")
    per_atom_energy: bool = setting(True, "energies per atom in Eq. 1, as mace trains")

    seed: int = setting(0, "seed of the weights' initialisation and the batches' order")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    dtype: str = setting("float32", "training precision", choices=DTYPES)
    threads: int = setting(1, "torch threads of the run")
    eval_batch_size: int = setting(16, "configurations per scoring batch")
    compile: bool = setting(True, "run the training step through torch.compile (same results to float rounding)")
    compile_aside: bool = setting(False, "with compile: eager steps while a second process compiles on a cold cache")

    def __post_init__(self) -> None:
        """`method` and `mode` resolved together: the method (`mode` alone names it in older
        configs), and `mode` as the data side of it."""
        _check(self.method is not None or self.mode in (None, *MODES), f"mode must be one of {MODES}, got {self.mode!r}")
        method = resolve_method(self.method or self.mode or "naive")
        _check(self.mode in (None, method.mode),
               f"mode = {self.mode!r} contradicts method = {method.name!r} (whose data side is {method.mode!r}): "
               "give the method alone")
        object.__setattr__(self, "method", method.name)
        object.__setattr__(self, "mode", method.mode)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "FinetuneConfig":
        """Build and validate; unknown keys and out-of-range values raise `ConfigError`."""
        unknown = unknown_keys(cls, values)
        if unknown:
            raise ConfigError(f"unknown config key {unknown_key_hint(cls, unknown)}")
        config = cls(**dict(values))
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "FinetuneConfig":
        """A copy with `changes`; a new `method` (or `mode`) replaces both (`mode` follows the method)."""
        values = self.to_dict()
        for given, follows in (("method", "mode"), ("mode", "method")):
            if given in changes and follows not in changes:
                values.pop(follows)
        return FinetuneConfig.from_dict({**values, **changes})

    @property
    def method_spec(self) -> Method:
        """The run's method: its weight method (trainables.core.methods) and whether it trains on replay."""
        return resolve_method(self.method)

    @property
    def method_options(self) -> dict[str, Any]:
        """The run's weight method's settings: its defaults under its `method_settings` entry."""
        spec = self.method_spec.weights
        return spec.settings(self.method_settings.get(spec.name, {}))

    @property
    def hyper(self) -> dict[str, Any]:
        """The run's optimizer's hyper-parameters: its `optimizer_hyper` entry, then `optimizer_kwargs`."""
        return {**self.optimizer_hyper.get(self.optimizer, {}), **self.optimizer_kwargs}

    def validate(self) -> None:
        _check(self.lr > 0, f"lr must be positive, got {self.lr}")
        self._validate_optimizer()
        self._validate_choices()
        _check(self.weight_decay is None or self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        _check(self.val_every_steps is None or self.val_every_steps >= 1,
               f"val_every_steps must be >= 1, got {self.val_every_steps}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(0 < self.valid_fraction < 1, f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        self._validate_protocol()
        self._validate_method()
        _check(self.threads >= 1, f"threads must be >= 1, got {self.threads}")
        _check(min(self.energy_weight, self.forces_weight, self.stress_weight) >= 0, "loss weights must be >= 0")
        _check(
            self.clip_grad_norm is None or self.clip_grad_norm > 0,
            f"clip_grad_norm must be positive or None, got {self.clip_grad_norm}",
        )
        _check(
            self.system is None or self.train_file is None,
            "give either an embedded `system` or a `train_file`, not both",
        )
        _check(self.e0s == "auto" or self.e0s_file is None,
               f"e0s = {self.e0s!r} and an e0s_file exclude each other: drop one")
        unknown_profiles = sorted(set(self.profile_tests) - set(self.test_files)) if self.train_file else []
        _check(not unknown_profiles, f"profile_tests names {unknown_profiles}, not among test_files {sorted(self.test_files)}")
        self._validate_replay()

    def _validate_optimizer(self) -> None:
        """Names first (no torch); hyper-parameters, where any are set, against the optimizers themselves."""
        from trainables.core.optimizers import get_optimizer_spec

        spec = get_optimizer_spec(self.optimizer)
        for name, hyper in self.optimizer_hyper.items():
            _check(isinstance(hyper, Mapping), f"optimizer_hyper[{name!r}] must be a table of hyper-parameters")
            if hyper:
                get_optimizer_spec(name).check_hyper(hyper, self.lr)
        if self.optimizer_kwargs:
            spec.check_hyper(self.hyper, self.lr)

    def _validate_choices(self) -> None:
        """Every field with a closed set of values (`setting`'s choices) holds one of them, or None."""
        for field_ in dataclasses.fields(self):
            value, choices = getattr(self, field_.name), choices_of(field_)
            _check(choices is None or value is None or value in choices,
                   f"{field_.name} must be one of {choices}, got {value!r}")

    def _validate_protocol(self) -> None:
        from trainables.core.optimizers import get_optimizer_spec

        _check(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        _check(0 < self.plateau_factor < 1, f"plateau_factor must be in (0, 1), got {self.plateau_factor}")
        _check(self.plateau_patience >= 0, f"plateau_patience must be >= 0, got {self.plateau_patience}")
        _check(self.ema_decay is None or 0 <= self.ema_decay < 1,
               f"ema_decay must be in [0, 1) (0 or None: no average), got {self.ema_decay}")
        argument = get_optimizer_spec(self.optimizer).warmup_argument
        _check(not self.warmup_steps or argument not in self.hyper,
               f"optimizer {self.optimizer!r} takes the warm-up as {argument!r}: give warmup_steps or "
               f"that hyper-parameter, not both")

    def _validate_method(self) -> None:
        """Every `method_settings` entry against its method; a method that runs eagerly needs `compile = false`."""
        for name, settings in self.method_settings.items():
            _check(isinstance(settings, Mapping), f"method_settings[{name!r}] must be a table of settings")
            get_method_spec(name).check_settings(settings)
        spec = self.method_spec.weights
        _check(spec.compiles or not self.compile,
               f"method {self.method!r} runs eagerly (the compiled step has no LoRA layers): set compile = false")

    def _validate_replay(self) -> None:
        _check(self.mode != "replay" or self.replay_samples is not None,
               f"method {self.method!r} trains on replay data: mode='replay' needs replay_samples "
               "(how many pre-training configurations to replay, e.g. 200)")
        _check(self.replay_samples is None or self.replay_samples >= 1,
               f"replay_samples must be >= 1, got {self.replay_samples}")
        _check(self.replay_file is None or self.replay_samples is not None,
               "replay_file is given but replay_samples is not set (how many of its configurations to use)")
        _check(self.replay_samples is None or self.replay_file is not None or self.train_file is None
               or self.foundation_is_embedded,
               "a replay set with train_file needs replay_file (only an embedded:SYSTEM foundation brings a "
               "pre-training corpus)")
        _check(self.replay_weight >= 0, f"replay_weight must be >= 0, got {self.replay_weight}")

    @property
    def foundation_is_embedded(self) -> bool:
        """Whether `foundation` names an embedded system's (`embedded` or `embedded:SYSTEM`)."""
        return self.foundation is not None and self.foundation.partition(":")[0] == "embedded"

    @property
    def has_replay_set(self) -> bool:
        """Whether the run prepares a replay set (trained on in `replay` mode, only scored in `naive`)."""
        return self.replay_samples is not None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class LBFGSConfig:
    """Hyper-parameters of the L-BFGS refinement stage (arXiv:2512.05489, Appendix B).

    Attributes:
        max_steps: K, the number of L-BFGS steps.
        history: m, the number of curvature pairs (s, y) kept.
        c1: Armijo constant, f(x + a p) <= f(x) + c1 a g'p.
        c2: weak Wolfe curvature constant, g(x + a p)'p >= c2 g'p; 0 < c1 < c2 < 1.
        backtrack: factor shrinking a trial step that fails Armijo (its inverse expands a step
            that is too short).
        max_line_search: most objective evaluations per step.
        initial_step: length ||alpha p|| of the first trial step while no curvature pair is stored
            (alpha = 1 on p = -(initial_step / ||g||) g), in units of the parameters.
        powell_threshold: sigma of Powell's damping: a damped y_bar has s'y_bar = sigma s'Bs.
        damping: when a pair is damped: "powell" when s'y < sigma s'Bs (Powell 1978; Nocedal &
            Wright, Procedure 18.2), "paper" only when s'y <= 0 (the paper's Algorithm 1). Both
            damp with Powell's formula; "powell" also damps pairs of weak positive curvature.
        patience: stop after this many steps without a strictly better validation score.
        step_tol: stop when ||x_{k+1} - x_k|| <= step_tol.
        loss_tol: stop when f_k - f_{k+1} <= loss_tol |f_k|. The default 0 stops only when an
            accepted step leaves f unchanged, the round-off floor of the loss.
        grad_tol: stop when ||g_k|| <= grad_tol (absolute, Euclidean norm).
    """

    max_steps: int = 30
    history: int = 20
    c1: float = 1e-4
    c2: float = 0.9
    backtrack: float = 0.5
    max_line_search: int = 20
    initial_step: float = 1e-2
    powell_threshold: float = 0.2
    damping: str = "powell"
    patience: int = 5
    step_tol: float = 1e-10
    loss_tol: float = 0.0
    grad_tol: float = 1e-12

    def __post_init__(self) -> None:
        _check_types(self)
        problems = _range_problems(self)
        if problems:
            raise ConfigError("invalid LBFGSConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LBFGSConfig:
        """Build and validate; unknown keys, wrong types and out-of-range values raise ConfigError."""
        reject_unknown_keys(cls, values, "LBFGSConfig key(s)")
        return cls(**values)


def unknown_keys(cls: type, values: Mapping[str, Any]) -> list[str]:
    """The keys of `values` that are not fields of the dataclass `cls`, sorted."""
    return sorted(set(values) - {f.name for f in dataclasses.fields(cls)})


def unknown_key_hint(cls: type, unknown: list[str]) -> str:
    """`'e0_file' (did you mean 'e0s_file'?)` for each unknown key: the closest field of `cls`, or
    the list of fields where none is close."""
    known = [f.name for f in dataclasses.fields(cls)]
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else f"{key!r} (known keys: {', '.join(known)})")
    return "; ".join(hints)


def reject_unknown_keys(cls: type, values: Mapping[str, Any], what: str) -> None:
    """ConfigError naming the keys of `values` that are not fields of the dataclass `cls`, and the known ones."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}; known keys: {known}")


def split_options(options: Mapping[str, Any]) -> tuple[LBFGSConfig, int]:
    """A study's `[lbfgs]` table: LBFGSConfig fields plus `chunk_size` (configurations per chunk of
    the objective, an integer >= 1). The one schema of that table, for the space parser and the stage."""
    options = dict(options)
    chunk = options.pop("chunk_size", DEFAULT_CHUNK)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"[lbfgs] chunk_size must be an integer >= 1, got {chunk!r}")
    return LBFGSConfig.from_dict(options), chunk


def _check_types(config: LBFGSConfig) -> None:
    """Integer fields must be ints, string fields strings; the others real numbers (bools are none)."""
    for attribute in dataclasses.fields(config):
        value = getattr(config, attribute.name)
        if isinstance(attribute.default, str):
            if not isinstance(value, str):
                raise ConfigError(f"LBFGSConfig.{attribute.name} must be a string, got {value!r}")
            continue
        wants_int = isinstance(attribute.default, int)
        allowed = (int,) if wants_int else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed):
            kind = "an integer" if wants_int else "a real number"
            raise ConfigError(f"LBFGSConfig.{attribute.name} must be {kind}, got {value!r}")


def _range_problems(c: LBFGSConfig) -> list[str]:
    """Every violated range condition of `c`, as messages naming the field and the allowed range."""
    checks = [
        (c.max_steps >= 1, f"max_steps must be >= 1, got {c.max_steps}"),
        (c.history >= 1, f"history must be >= 1, got {c.history}"),
        (0 < c.c1 < c.c2 < 1,
         f"need 0 < c1 < c2 < 1 (Armijo constant below the Wolfe curvature constant), "
         f"got c1={c.c1}, c2={c.c2}"),
        (0 < c.backtrack < 1, f"backtrack must lie in (0, 1), got {c.backtrack}"),
        (c.max_line_search >= 1, f"max_line_search must be >= 1, got {c.max_line_search}"),
        (0 < c.initial_step < math.inf, f"initial_step must be positive and finite, got {c.initial_step}"),
        (0 < c.powell_threshold < 1, f"powell_threshold must lie in (0, 1), got {c.powell_threshold}"),
        (c.damping in DAMPING_RULES, f"damping must be one of {DAMPING_RULES}, got {c.damping!r}"),
        (c.patience >= 1, f"patience must be >= 1, got {c.patience}"),
        (0 <= c.step_tol < math.inf, f"step_tol must be >= 0 and finite, got {c.step_tol}"),
        (0 <= c.loss_tol < 1, f"loss_tol must lie in [0, 1), got {c.loss_tol}"),
        (0 <= c.grad_tol < math.inf, f"grad_tol must be >= 0 and finite, got {c.grad_tol}"),
    ]
    return [message for ok, message in checks if not ok]
