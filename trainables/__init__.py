"""Fine-tuning core of optistudy: data, MACE foundation models, Eq. 1 loss, optimizers, L-BFGS.

This layer knows nothing of Ray or Parquet: the study layer owns those, and the Ray Tune wrappers
that run its stages (`study.trials`).
"""

import warnings

from trainables import quiet_imports

quiet_imports.install()  # before anything imports mace's modules: its import-time notices
# mace sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD on import (e3nn's own constants need it), so it must be
# imported before e3nn; torch then warns once per e3nn load. This project's loads pass weights_only.
warnings.filterwarnings("ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
# Building a MACE model scripts e3nn's generated code, and TorchScript warns about e3nn's annotations
# (42 two-line warnings in one `study.launch`); they say nothing about the user's run.
warnings.filterwarnings("ignore", message="The TorchScript type system doesn't support instance-level annotations")
# mace's `remove_pt_head` (exporting the task head of a replay run) passes the model's atomic
# numbers, a tensor, to the new model, which calls torch.tensor on them; the numbers come out right.
warnings.filterwarnings("ignore", message="To copy construct from a tensor", module="mace.modules.models")

import mace  # noqa: E402,F401
