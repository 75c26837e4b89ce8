"""A study's stages, one run each: inputs shared by a study's trials (`inputs`), first-order
fine-tuning (`finetune`) and the L-BFGS refinement (`refine`). The Ray Tune wrappers
(`trainables.ray_trainables`) and the single-run commands (`python -m trainables.finetune`,
`python -m trainables.refine`) call them."""
