"""What a study's command decides, as frozen values: the trials' resources and the launch as a whole.

Light to import (no Ray, no torch): the launch builds them before the inputs thread has imported
the training stack (`study.handoff`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from search_spaces import SearchSpace
from trainables.core.config import FinetuneConfig


@dataclass(frozen=True)
class Resources:
    """Each trial's share of the cluster and how its failures are handled."""

    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    max_concurrent: int = 0          # 0: as many as the resources allow
    max_failures: int = 2            # retries of a trial that raises, from its last checkpoint
    checkpoint_every_s: float = 30.0  # seconds between a trial's checkpoints (0: every epoch)


@dataclass(frozen=True)
class Launch:
    """One study as its command asks for it: the space (narrowed by the flags), the study's
    FinetuneConfig, where it lives (`folder`, named `name`), the Ray to run on (`address`: None for
    a new local Ray, with `num_cpus`/`num_gpus` if given), the trials' resources, whether it resumes
    an interrupted study, and `verbose`: 0 prints nothing while the stages run, 1 a line per
    finished trial and a status line now and then (`study.progress`), 2 Ray Tune's own tables."""

    space: SearchSpace
    config: FinetuneConfig
    name: str
    folder: Path
    resources: Resources
    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    resume: bool = False
    verbose: int = 1
