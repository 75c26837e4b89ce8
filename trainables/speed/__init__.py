"""What makes a step fast and leaves its numbers alone: the compiled training step (`compiled`), the
fused scalar convolution (`fused_conv`), one compile per node (`compile_lock`), the embedded
default's compiled step shipped with the package (`shipped_steps`), the compile warm-up beside
pretraining (`warm_up`, a second process running the module its caller names) and eager steps
while a second process compiles (`background_compile`)."""
