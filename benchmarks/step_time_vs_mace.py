"""Optimizer-step time of this project's loop against mace's own trainer (`mace_run_train`).

    python benchmarks/step_time_vs_mace.py [--epochs 3] [--batch-size 5] [--dtype float32]

Both sides fine-tune the embedded foundation (the same ScaleShiftMACE, the same weights, restricted
to the elements of the data, one head) on the embedded default's training file, split 90/10 by
each side's own seeded split, with Adam (amsgrad, as mace always uses it), lr 1e-3, gradient
clipping at 10, loss weights w_E = 1, w_F = 100, the same batch size and dtype, one thread
(OMP_NUM_THREADS=1, torch.set_num_threads(1)) on the CPU. mace gets the foundation as a whole
pickled module (its `--foundation_model` unpickles it), written to a temporary folder.

A step is what mace's `take_step` times and logs (mode "opt", "time" in results/*_train.txt):
moving the batch to the device, zero_grad, forward with autograd forces, loss, backward,
clipping, optimizer.step and reading the loss. Ours is the same span of `training.train_epoch`:
from the moment the loader hands the batch over until the loop asks for the next one. Both leave
out batch collation (graphs are built once, before training, on both sides) and evaluation.
Differences that remain: mace's loss averages forces over a batch's atoms, ours per configuration
(Eq. 1); mace puts weight decay 5e-7 on some parameter groups, ours none. Goal: ours / mace's <= 0.9.

Ours runs three times: as the engine runs it (`compile=True`: the step through torch.compile, see
trainables/speed/compiled.py; its first step includes compiling, reported apart), eagerly until a
second process has compiled the step and compiled from then on (trainables/speed/background_compile.py;
the step that switched loads the compiled step from the cache), and eagerly (`compile=False`), the
same code path as mace's. Both compiled runs start from an empty compiler cache of their own (a
cold compile, as on a node's first run of a model). mace 0.3.16's trainer has no compiled mode.

`--shape mp-small` / `mp-medium` replaces the embedded foundation by a model of a foundation's size,
built with mace's own ScaleShiftMACE from the published hyper-parameters of MACE-MP-0 small
(128x0e, max_ell 3, correlation 3, radial MLP [64, 64, 64], r_max 6 A, 2 interactions) and medium
(128x0e + 128x1o, the same otherwise), restricted to the data's elements (C, H, N, O; the
published models carry 89, which changes the element tables, not a step's work), with seeded
random weights (nothing can be downloaded here). Goal for those: ours / mace's <= 0.7. The peak
resident memory of each side is reported too (ours: this process, both runs; mace: its subprocess).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for category in (UserWarning, DeprecationWarning):  # mace's TorchScript warnings would bury the table
    warnings.simplefilter("ignore", category)

from mace.tools.scripts_utils import extract_config_mace_model  # noqa: E402

from benchmarks._common import single_thread_env  # noqa: E402
from trainables.core import data as D  # noqa: E402
from trainables.core.config import FinetuneConfig  # noqa: E402
from trainables.core.foundation import build_model, config_to_plain, load_foundation, save_model  # noqa: E402
from trainables.core.optimizers import get_optimizer_spec  # noqa: E402
from trainables.core.training import seed_everything, set_modes, set_threads, train_epoch  # noqa: E402
from trainables.speed.background_compile import EagerUntilCompiled  # noqa: E402
from trainables.speed.compiled import compiled_view, eager_copy  # noqa: E402
from trainables.stages.finetune import loss_weights  # noqa: E402
from trainables.stages.inputs import prepare_inputs, resolve_sources  # noqa: E402

LR, SEED, CLIP = 1e-3, 0, 10.0
MODES = ("compiled", "eager until compiled", "eager")  # our step's modes, each a row; both compiled ones cold
# MACE-MP-0's published hyper-parameters (mace's foundation model cards), beside the embedded model's
SHAPES = {
    "mp-small": {"hidden_irreps": "128x0e", "max_ell": 3, "correlation": 3, "radial_MLP": [64, 64, 64],
                 "r_max": 6.0, "num_interactions": 2, "num_bessel": 10, "num_polynomial_cutoff": 5,
                 "MLP_irreps": "16x0e"},
    "mp-medium": {"hidden_irreps": "128x0e+128x1o", "max_ell": 3, "correlation": 3, "radial_MLP": [64, 64, 64],
                  "r_max": 6.0, "num_interactions": 2, "num_bessel": 10, "num_polynomial_cutoff": 5,
                  "MLP_irreps": "16x0e"},
}


def foundation_of_shape(shape: str, workdir: Path) -> str | None:
    """None for the embedded foundation; else the path of a seeded random model of that shape."""
    if shape == "embedded":
        return None
    embedded = load_foundation(resolve_sources(FinetuneConfig()).foundation)
    plain = {**config_to_plain(extract_config_mace_model(embedded)), **SHAPES[shape]}
    torch.manual_seed(SEED)
    return str(save_model(build_model(plain), workdir / f"foundation-{shape}.pt"))


class TimedLoader:
    """Wraps a loader; `steps` collects the seconds the consumer spent on each batch, from handing
    it over until the next one is asked for (so collating the batch is not counted)."""

    def __init__(self, loader):
        self.loader, self.steps = loader, []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            start = time.perf_counter()
            yield batch
            self.steps.append(time.perf_counter() - start)


def fresh_compiler_cache() -> str:
    """A new, empty inductor cache for this process (a cold compile for the row that follows)."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="optistudy-bench-inductor-")
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def step_module(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """What the loop calls: the model itself, its compiled view, or eager steps until a second
    process has compiled the view (trainables/speed/background_compile.py)."""
    if mode == "eager":
        return model
    fresh_compiler_cache()
    if mode == "compiled":
        return compiled_view(model)
    return EagerUntilCompiled(model)


def run_ours(args, mode: str) -> dict:
    """`args.epochs` epochs of `train_epoch` with the step of `mode` (see MODES); per-step seconds,
    the parameter count and, eager until compiled, the step that first ran compiled."""
    config = FinetuneConfig(optimizer="adam", lr=LR, epochs=args.epochs, batch_size=args.batch_size,
                            dtype=args.dtype, threads=1, seed=SEED, device="cpu", clip_grad_norm=CLIP,
                            optimizer_kwargs={"amsgrad": True}, compile=mode != "eager", foundation=args.foundation)
    inputs = prepare_inputs(config)
    set_threads(1)
    seed_everything(SEED)
    model, spec = inputs.initial_model(), get_optimizer_spec("adam")
    if mode != "eager":
        model = eager_copy(model)
    step_model = step_module(model, mode)
    optimizer = spec.build(model.parameters(), lr=LR, **config.optimizer_kwargs)
    loader = TimedLoader(D.training_loader(inputs.graphs["train"], args.batch_size, seed=SEED))
    for _ in range(args.epochs):
        set_modes(model, optimizer, spec, train=True)
        train_epoch(step_model, loader, optimizer, loss_weights(config), torch.device("cpu"), CLIP)
    if isinstance(step_model, EagerUntilCompiled):
        step_model.close()
    return {"steps": loader.steps, "parameters": sum(p.numel() for p in model.parameters()),
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "switched_at": getattr(step_model, "switched_at", None)}


def mace_command(args, workdir: Path, train_file: Path, e0s: dict[int, float]) -> list[str]:
    return [
        str(Path(sys.executable).parent / "mace_run_train"), "--name", "bench", "--work_dir", str(workdir),
        "--train_file", str(train_file), "--valid_fraction", "0.1", "--seed", str(SEED),
        "--foundation_model", str(workdir / "foundation_module.pt"), "--multiheads_finetuning", "False",
        "--E0s", json.dumps(e0s).replace('"', ""), "--energy_key", "energy", "--forces_key", "forces",
        "--loss", "weighted", "--energy_weight", "1", "--forces_weight", "100",
        "--batch_size", str(args.batch_size), "--valid_batch_size", "16", "--max_num_epochs", str(args.epochs),
        "--optimizer", "adam", "--lr", str(LR), "--clip_grad", str(CLIP),
        "--default_dtype", args.dtype, "--device", "cpu",
    ]


def run_mace(args, workdir: Path) -> dict:
    """mace_run_train in a subprocess; per-step seconds from its results log."""
    sources = resolve_sources(FinetuneConfig(foundation=args.foundation))
    torch.save(load_foundation(sources.foundation), workdir / "foundation_module.pt")
    elements = D.elements_of([D.read_labelled(sources.train)])
    e0s = {z: e for z, e in D.read_e0s(sources.e0s).items() if z in elements}
    env = single_thread_env(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")  # torch >= 2.6 would refuse the module
    done = subprocess.run(mace_command(args, workdir, sources.train, e0s), cwd=workdir, env=env,
                          capture_output=True, text=True)
    (workdir / "mace_run_train.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"mace_run_train failed (exit {done.returncode}); see {workdir / 'mace_run_train.log'}")
    rows = [json.loads(line) for path in workdir.glob("results/*_train.txt") for line in path.read_text().splitlines()]
    trained = torch.load(workdir / "bench.model", map_location="cpu", weights_only=False)  # mace's own output
    return {"steps": [row["time"] for row in rows if row.get("mode") == "opt"],
            "parameters": sum(p.numel() for p in trained.parameters()),
            "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def format_table(rows: dict[str, dict]) -> str:
    header = (f"{'trainer':<32} {'params':>8} {'steps':>6} {'first (s)':>10} {'median (ms)':>12} "
              f"{'mean* (ms)':>11} {'total (s)':>10} {'peak MiB':>9}")
    lines = [header]
    for name, row in rows.items():
        steps = row["steps"]
        lines.append(f"{name:<32} {row['parameters']:>8} {len(steps):>6} {steps[0]:>10.2f} "
                     f"{1000 * statistics.median(steps):>12.2f} {1000 * statistics.fmean(steps[1:]):>11.2f} "
                     f"{sum(steps):>10.2f} {row['peak_mib']:>9.0f}")
    return "\n".join(lines + ["mean*: without the first step (which compiles, for the compiled loop)"])


def ratio_line(name: str, ours: list[float], theirs: list[float], goal: float) -> str:
    return (f"step time {name} / mace's: median {statistics.median(ours) / statistics.median(theirs):.2f}, "
            f"mean* {statistics.fmean(ours[1:]) / statistics.fmean(theirs[1:]):.2f}, "
            f"total {sum(ours) / sum(theirs):.2f} (goal <= {goal:g})")


def switch_line(row: dict) -> str:
    if row["switched_at"] is None:
        return "eager until compiled: every step eager (the second process had not compiled the step by the end)"
    return (f"eager until compiled: step {row['switched_at']} of {len(row['steps'])} was the first compiled one "
            f"(it loaded the step from the cache in {row['steps'][row['switched_at'] - 1]:.1f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--workdir", type=Path, default=None, help="mace's folder (default: a temporary one)")
    parser.add_argument("--shape", choices=("embedded", *SHAPES), default="embedded",
                        help="the embedded foundation, or a random model of MACE-MP-0 small's or medium's size")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="optistudy-mace-"))
    workdir.mkdir(parents=True, exist_ok=True)
    args.foundation = foundation_of_shape(args.shape, workdir)
    rows = {"mace": run_mace(args, workdir), **{f"optistudy {mode}": run_ours(args, mode) for mode in MODES}}
    print(f"\n{args.shape} model, {args.epochs} epochs, batch size {args.batch_size}, {args.dtype}, 1 thread, CPU; "
          f"mace log in {workdir}")
    print(format_table(rows))
    goal = 0.9 if args.shape == "embedded" else 0.7
    for mode in MODES:
        print(ratio_line(mode, rows[f"optistudy {mode}"]["steps"], rows["mace"]["steps"], goal))
    print(switch_line(rows["optistudy eager until compiled"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
