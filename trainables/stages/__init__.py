"""A study's stages, one run each: inputs shared by a study's trials (`inputs`), first-order
fine-tuning (`finetune`) and the L-BFGS refinement (`refine`); `warm_compile` runs a fine-tuning
run's first steps in a second process, so that its compiled step is cached before the trials
start. The study's Ray Tune trainables and the single-run commands (`python -m trainables.finetune`,
`python -m trainables.refine`) call them."""
