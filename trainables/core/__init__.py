"""The fine-tuning core, free of Ray and of the compile machinery: data (`data`), foundation models
(`foundation`), the Eq. 1 loss (`loss`), the first-order optimizers (`optimizers`), the training
loop's pieces (`training`), multi-head replay (`replay`), the L-BFGS algorithm (`lbfgs`) and the
run's environment (`environment`). Imports point one way: core <- speed <- embedded <- stages."""
