"""The training step through `torch.compile`: MACE's forward, autograd forces and loss gradient fused.

MACE on a CPU spends most of a step in thousands of small element-wise kernels; inductor fuses
them, which made an optimizer step about 1.8x faster on the embedded default (see
benchmarks/step_time_vs_mace.py). This follows mace's own recipe (`mace.tools.compile`):
e3nn's TorchScript code generation off, the symmetric contractions traced with `torch.fx`, and
`torch.autograd.grad` traced into the graph so that the forces' second derivative is compiled too.
The compiled view's convolutions over scalar node features are computed in a layout inductor
vectorizes (`trainables.speed.fused_conv`, through mace's `conv_fusion` hook): 1.6-1.8x faster again.

Two modules share one set of parameters: the eager model (owner of the weights: the optimizer,
evaluation and saving use it) and the compiled view used for the training step. Compilation runs
on the first step (a few seconds; inductor's on-disk cache makes later processes on a node faster).
`training_modules` keeps the last pair of a process and loads the next run's weights into it, so
runs one after another in a process (a reused Ray actor, a plain loop, tests) compile once.
On a foundation-sized model the first compile takes minutes; `trainables.speed.background_compile`
takes eager steps meanwhile and compiles the step in a second process.
"""

from __future__ import annotations

import torch
from mace.tools import compile as mace_compile
from mace.tools.scripts_utils import extract_config_mace_model
from torch._dynamo.exc import TorchDynamoException
from torch.fx.experimental import _config as fx_config

from trainables.core.data import default_dtype
from trainables.core.foundation import restore_trainable
from trainables.errors import ConfigError
from trainables.speed.compile_lock import first_compile_on_node, is_compiled_on_node, step_key
from trainables.speed.fused_conv import fuse_convolutions
from trainables.speed.shipped_steps import load_shipped_steps

_LAST: dict[tuple, tuple[torch.nn.Module, torch.nn.Module]] = {}  # architecture -> (eager, compiled view)

# Inductor's C++ kernels for this step, generated for more than one OpenMP thread, corrupt the heap
# (torch 2.13: "double free or corruption" in the first backward pass of a run with --threads 2,
# reproduced on the embedded default at both sizes). Generated for one thread they are correct,
# whatever torch's thread count: a run with more threads compiles serial fused kernels and runs
# the matrix products (oneDNN/BLAS, outside the generated code) on all its threads. (Two-thread
# kernels without vectorization, "cpp.vec_isa_ok": False, did not crash and were faster on two
# threads, but the corrupting kernel is not known, so they are not trusted.)
SERIAL_CPU_KERNELS = {"cpp.threads": 1}


def training_modules(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(eager, compiled): an eager model holding `model`'s weights and trainable set, and a compiled
    view sharing its parameters. The pair is this process's last one when the architecture, dtype
    and device match (its weights overwritten in place), else a new one. Train the eager model's
    parameters through the view; copy the result out before the next call reuses the pair."""
    key = _architecture_key(model)
    if key not in _LAST:
        _LAST.clear()
        eager = eager_copy(model)
        _LAST[key] = (eager, compiled_view(eager))
    eager, view = _LAST[key]
    eager.load_state_dict(model.state_dict())
    for parameter in eager.parameters():
        parameter.grad = None
    return eager, view


def compile_seconds() -> float:
    """Seconds this process has spent compiling with torch.compile so far (Dynamo's own timer, which
    includes loading a compiled graph from the on-disk cache). The difference over a run is that
    run's one-time compile cost: a worker's first trial pays it, a reused worker's next ones do not."""
    return float(torch._dynamo.utils.calculate_time_spent().get("entire_frame_compile", 0.0))


def compiled_variants() -> int:
    """How many variants of the step (see `call_signature`) this process's compiled model has run."""
    return sum(len(view.compiled_keys) for _, view in _LAST.values())


def _architecture_key(model: torch.nn.Module, device_type_only: bool = False) -> tuple:
    parameter = next(model.parameters())
    trainable = tuple(name for name, p in model.named_parameters() if p.requires_grad)
    device = parameter.device.type if device_type_only else str(parameter.device)
    return type(model), repr(extract_config_mace_model(model)), trainable, parameter.dtype, device


def eager_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The same MACE model, weights and trainable set, built without e3nn's TorchScript kernels
    (which `torch.compile` cannot trace). Evaluation is no slower on it than on the scripted one."""
    dtype = next(model.parameters()).dtype
    config = extract_config_mace_model(model)
    config["atomic_numbers"] = [int(z) for z in config["atomic_numbers"]]  # a tensor here makes mace warn
    with mace_compile.disable_e3nn_codegen(), default_dtype(dtype):
        copy = type(model)(**config)
    restore_trainable(copy, [name for name, _ in model.named_parameters()])
    copy.load_state_dict(model.state_dict())
    frozen = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    for name, parameter in copy.named_parameters():
        parameter.requires_grad_(name not in frozen)
    return copy.to(next(model.parameters()).device)


def compiled_view(model: torch.nn.Module) -> torch.nn.Module:
    """A `torch.compile`d module sharing `model`'s parameters (`model` is left as it is).

    `model` must come from `eager_copy`. Shapes are dynamic: batches differ in atoms and edges."""
    mace_compile.configure_autograd_for_compile(allow_autograd=True)
    # Every model's fx modules are classes of their own, so an earlier model's compiled code would
    # only fail its guards and pile up recompilations: one compiled model per process at a time.
    torch._dynamo.reset()
    view = mace_compile.simplify(_shallow_tree_copy(model))
    fused = fuse_convolutions(view)  # the convolutions in a layout inductor vectorizes (trainables/speed/fused_conv.py)
    compiled = torch.compile(view, fullgraph=True, dynamic=True, options=SERIAL_CPU_KERNELS)
    return _CompiledStep(compiled, (*_architecture_key(model, device_type_only=True), ("fused convolutions", fused)))


# Inductor's CPU kernels sum a reduction of more than this many elements in blocks, and guard on
# it: batches with more edges are a second variant of the compiled step (seen with TORCH_LOGS=dynamic).
LONG_REDUCTION_EDGES = 4096


class _CompiledStep(torch.nn.Module):
    """The compiled module. The first call of each variant of the step (which compiles it) runs
    alone among this node's processes compiling the same variant after the same ones before it
    (`trainables.speed.compile_lock`): the others load it from the cache after. The process that
    compiles first loads the package's compiled steps into the cache (`shipped_steps`). Compilation failures (a model that Dynamo cannot trace, a
    missing C++ compiler) become one actionable ConfigError: the run stops with the remedy named."""

    def __init__(self, compiled: torch.nn.Module, architecture: tuple):
        super().__init__()
        self.compiled, self._architecture = compiled, step_key(architecture, SERIAL_CPU_KERNELS)
        self.compiled_keys: dict[tuple, str] = {}  # call signature -> node-wide key of the variant it compiled

    def forward(self, *args, **kwargs):
        signature = call_signature(args, kwargs)
        if signature in self.compiled_keys:
            return self._explained(*args, **kwargs)
        # Dynamo compiles a process's second variant as a recompilation, into another graph than
        # the same variant compiled first in a process: the key holds the variants before it.
        key = step_key(self._architecture, *self.compiled_keys, signature)
        with first_compile_on_node(key):
            if not is_compiled_on_node(key):  # this process compiles it for the node
                load_shipped_steps()
            output = self._explained(*args, **kwargs)
        self.compiled_keys[signature] = key
        return output

    # Dynamo's duck sizing gives dimensions of equal size one symbol. A first batch whose `ptr` (graphs
    # + 1) happened to equal a fixed dimension (3 coordinates, 4 elements of a CHNO model) tied the
    # graph count to it: that graph was compiled static in the graph count, and the next batch size
    # recompiled it (tens of seconds each, unseen by the compile lock). Without duck sizing (patched
    # around every call, as tracing happens in the first) the graph is the same whatever the first
    # batch, and inductor's cache hits; equal sizes the model needs are still unified as it traces.
    def _explained(self, *args, **kwargs):
        try:
            with fx_config.patch(use_duck_shape=False):
                return self.compiled(*args, **kwargs)
        except TorchDynamoException as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ConfigError(f"torch.compile failed on this model ({reason}); run it eagerly with "
                              f"--compile false (compile = false in a config or space file)") from error


class ScoringThroughStep(torch.nn.Module):
    """Energies and forces for scoring through the compiled training step: evaluation called eagerly
    took 2.2x as long on the embedded default (benchmarks/trial_profile.py). It calls the step as the
    training loop does (`training=True`, the same `compute_stress`), so it runs the variant training
    compiled rather than compiling one of its own (tens of seconds), and hands back outputs without
    their graph. A batch of one configuration runs on the eager model: the step's shapes are dynamic
    down to two graphs, not one. Called like a MACE model by `trainables.core.training.evaluate`."""

    def __init__(self, step: torch.nn.Module, eager: torch.nn.Module, compute_stress: bool):
        super().__init__()
        self.step, self.eager, self.compute_stress = step, eager, compute_stress

    def forward(self, data: dict, training: bool = False, compute_force: bool = True,
                compute_stress: bool = False) -> dict:
        if data["ptr"].numel() <= 2:
            return self.eager(data, training=training, compute_force=compute_force, compute_stress=compute_stress)
        output = self.step(data, training=True, compute_force=True, compute_stress=self.compute_stress)
        return {name: value.detach() if isinstance(value, torch.Tensor) else value for name, value in output.items()}


def call_signature(args: tuple, kwargs: dict) -> tuple:
    """What of a call picks the variant of the graph besides the model: the data's keys and dtypes,
    the options, and whether its edges exceed LONG_REDUCTION_EDGES."""
    data = args[0] if args and isinstance(args[0], dict) else {}
    fields = tuple(sorted((name, str(getattr(value, "dtype", type(value).__name__))) for name, value in data.items()))
    edges = data["edge_index"].shape[-1] if "edge_index" in data else 0
    return fields, tuple(sorted((name, repr(value)) for name, value in kwargs.items())), edges > LONG_REDUCTION_EDGES


def _shallow_tree_copy(module: torch.nn.Module) -> torch.nn.Module:
    """New module objects down the tree, the same parameter and buffer tensors: `simplify` swaps
    submodules in place, and must not swap them in the model that is saved and evaluated."""
    clone = object.__new__(type(module))  # not copy.copy: e3nn's __getstate__ would re-script
    clone.__dict__.update(module.__dict__)
    clone._modules = {name: None if child is None else _shallow_tree_copy(child)
                      for name, child in module._modules.items()}
    return clone
