"""Fine-tuning core of optistudy: data, MACE foundation models, Eq. 1 loss, optimizers, L-BFGS.

This layer knows nothing of Ray or Parquet (the study layer owns those).
`import mace` comes first: under torch >= 2.6 mace sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD on import,
which e3nn's own module-level loads need.
"""

import mace  # noqa: F401  (must precede any e3nn import)
