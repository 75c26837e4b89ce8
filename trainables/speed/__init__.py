"""What makes a step fast and leaves its numbers alone: the compiled training step (`compiled`), the
fused scalar convolution (`fused_conv`), one compile per node (`compile_lock`) and the compile
warm-up beside pretraining (`warm_up`, which runs `python -m trainables.warm_compile`)."""
