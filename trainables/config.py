"""One configuration object for a fine-tuning run, validated once, flowing from the CLI to the trainable.

`FinetuneConfig.from_dict` is the single entry point: it rejects unknown keys, checks ranges and
returns a frozen dataclass. `to_dict` gives the plain dict that Ray passes around as `config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from trainables.errors import ConfigError

DTYPES = ("float32", "float64")
SCHEDULES = ("constant", "cosine")
MODES = ("naive", "replay")
REPLAY_SELECTIONS = ("fps", "random")


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything one fine-tuning run needs.

    Data: either `system` (an embedded default, see `trainables.embedded`) or `train_file` with
    optional `valid_file` (else a seeded split of `valid_fraction`), named `test_files`
    ({name: path}) and `e0s_file` (isolated-atom energies). Label keys default to auto-detection
    (mace-style `REF_*` first, then labels stored by ASE's calculator).
    Foundation: a local model file or a mace_mp name; None means the embedded system's own.
    Loss (Eq. 1): `energy_weight` w_E, `forces_weight` w_F, `stress_weight` w_S; energies per atom
    when `per_atom_energy` (as mace trains).
    Optimizer: `weight_decay` None keeps the optimizer's own default (see trainables.optimizers).
    Budget: `epochs` (or `max_steps` when set), `batch_size`, gradient clipping, `schedule`.
    Mode: `naive` fine-tunes the foundation's single head; `replay` trains a two-head model whose
    replay head ("pt_head") is supervised on `replay_samples` configurations of pre-training data
    (`replay_file`, else the embedded system's corpus) chosen by `replay_selection` (seeded by
    `split_seed`), each weighted `replay_weight` (c_n in Eq. 1). With `replay_samples` set, naive
    runs score the same replay set without training on it, so forgetting compares across modes.
    Speed: `compile` runs the training step through `torch.compile` (trainables.compiled; same
    results to float rounding, ~1.8x faster steps on a CPU after a few seconds of compilation).
    """

    system: str | None = None
    data_size: str = "full"
    train_file: str | None = None
    valid_file: str | None = None
    test_files: dict[str, str] = field(default_factory=dict)
    e0s_file: str | None = None
    energy_key: str | None = None
    forces_key: str | None = None
    stress_key: str | None = None
    valid_fraction: float = 0.1
    split_seed: int = 0
    foundation: str | None = None

    mode: str = "naive"
    replay_file: str | None = None
    replay_samples: int | None = None
    replay_selection: str = "fps"
    replay_weight: float = 1.0

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float | None = None
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    schedule: str = "constant"

    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 5
    clip_grad_norm: float | None = 10.0

    energy_weight: float = 1.0
    forces_weight: float = 100.0
    stress_weight: float = 0.0
    per_atom_energy: bool = True

    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    threads: int = 1
    eval_batch_size: int = 16
    compile: bool = True

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "FinetuneConfig":
        """Build and validate; unknown keys and out-of-range values raise `ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; known keys: {sorted(known)}")
        config = cls(**dict(values))
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "FinetuneConfig":
        return FinetuneConfig.from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        from trainables.optimizers import get_optimizer_spec

        get_optimizer_spec(self.optimizer)
        _check(self.lr > 0, f"lr must be positive, got {self.lr}")
        _check(self.weight_decay is None or self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(0 < self.valid_fraction < 1, f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        _check(self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        _check(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
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
        self._validate_replay()

    def _validate_replay(self) -> None:
        _check(self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}")
        _check(self.mode != "replay" or self.replay_samples is not None,
               "mode='replay' needs replay_samples (how many pre-training configurations to replay, e.g. 200)")
        _check(self.replay_samples is None or self.replay_samples >= 1,
               f"replay_samples must be >= 1, got {self.replay_samples}")
        _check(self.replay_file is None or self.replay_samples is not None,
               "replay_file is given but replay_samples is not set (how many of its configurations to use)")
        _check(self.replay_samples is None or self.replay_file is not None or self.train_file is None,
               "a replay set with train_file needs replay_file (only embedded systems bring a pre-training corpus)")
        _check(self.replay_selection in REPLAY_SELECTIONS,
               f"replay_selection must be one of {REPLAY_SELECTIONS}, got {self.replay_selection!r}")
        _check(self.replay_weight >= 0, f"replay_weight must be >= 0, got {self.replay_weight}")

    @property
    def has_replay_set(self) -> bool:
        """Whether the run prepares a replay set (trained on in `replay` mode, only scored in `naive`)."""
        return self.replay_samples is not None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
