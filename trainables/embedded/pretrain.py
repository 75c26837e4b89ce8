"""The embedded foundation model: a small ScaleShiftMACE pretrained from scratch on an embedded
system's corpus, so that the project runs offline with a real (if small) foundation.

Architecture (about 30k parameters): 32x0e hidden features, max_ell 2, correlation 2, two residual
interactions, r_max 5 A. Trained with Adam and a cosine schedule on Eq. 1; cached beside the
system's data as a state_dict file, rebuilt when missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from e3nn import o3
from mace import modules
from mace.modules.utils import compute_avg_num_neighbors, compute_mean_rms_energy_forces

from trainables.core import data as D
from trainables.core.foundation import save_model
from trainables.core.loss import LossWeights
from trainables.core.optimizers import build_optimizer
from trainables.core.training import evaluate, seed_everything, set_threads, train_epoch
from trainables.speed.compiled import compiled_view, eager_copy

if TYPE_CHECKING:
    from trainables.embedded import SystemFiles
    from trainables.speed.warm_up import CompileWarmUp

FOUNDATION_FILE = "foundation.pt"


@dataclass(frozen=True)
class PretrainSpec:
    epochs: int
    batch_size: int = 8
    lr: float = 1e-2
    seed: int = 0
    valid_fraction: float = 0.05
    compile: bool = True  # pays off over minutes of training, not over the smoke size's seconds
    # compile the fine-tuning step meanwhile (pays off where pretraining takes minutes); not part of
    # the recipe: the foundation comes out the same
    warm_compile: bool = field(default=True, metadata={"recipe": False})


PRETRAIN = {"full": PretrainSpec(epochs=30),
            "smoke": PretrainSpec(epochs=4, batch_size=4, compile=False, warm_compile=False)}


def architecture(elements: list[int], e0s: dict[int, float], avg_num_neighbors: float,
                 scale: float, shift: float) -> torch.nn.Module:
    """The embedded foundation's ScaleShiftMACE, freshly initialised."""
    return modules.ScaleShiftMACE(
        r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=2,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=len(elements), hidden_irreps=o3.Irreps("32x0e"),
        MLP_irreps=o3.Irreps("16x0e"), gate=torch.nn.functional.silu, radial_MLP=[32, 32, 32],
        atomic_energies=np.array([e0s[z] for z in elements]), avg_num_neighbors=avg_num_neighbors,
        atomic_numbers=elements, correlation=2, atomic_inter_scale=scale, atomic_inter_shift=shift,
    )


def _fresh_model(train_graphs, elements, e0s) -> torch.nn.Module:
    loader = D.make_loader(train_graphs, 32, shuffle=False)
    e0_array = np.array([e0s[z] for z in elements])
    shift, scale = compute_mean_rms_energy_forces(loader, e0_array)
    return architecture(elements, e0s, compute_avg_num_neighbors(loader), float(np.ravel(scale)[0]), float(np.ravel(shift)[0]))


def untrained_foundation(corpus: Path, e0s_file: Path, spec: PretrainSpec) -> tuple[torch.nn.Module, list, list]:
    """(the freshly initialised foundation, training graphs, validation graphs): the model's
    constants (E0s, scale, shift, average number of neighbours) come from the corpus, its weights
    from the seed set before this call."""
    items = D.read_labelled(corpus)
    e0s = D.read_e0s(e0s_file)
    elements = D.elements_of([items])
    train, valid = D.seeded_split(items, spec.valid_fraction, spec.seed)
    train_graphs, valid_graphs = (D.build_graphs(s, elements, 5.0, torch.float32) for s in (train, valid))
    with D.default_dtype(torch.float32):
        return _fresh_model(train_graphs, elements, e0s), train_graphs, valid_graphs


def pretrain(corpus: Path, e0s_file: Path, spec: PretrainSpec, progress: Callable[[str], None] = print,
             on_initialised: Callable[[torch.nn.Module], None] | None = None) -> torch.nn.Module:
    """Train a foundation from scratch on `corpus` (float32); `on_initialised` receives the model
    before its first step (architecture and constants final, weights untrained)."""
    set_threads(1)
    seed_everything(spec.seed)
    model, train_graphs, valid_graphs = untrained_foundation(corpus, e0s_file, spec)
    if on_initialised is not None:
        on_initialised(model)
    if spec.compile:
        model = eager_copy(model)
    step_model = compiled_view(model) if spec.compile else model  # shares model's parameters
    loader = D.training_loader(train_graphs, spec.batch_size, seed=spec.seed)
    optimizer = build_optimizer("adam", model.parameters(), lr=spec.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs * len(loader))
    device, start = torch.device("cpu"), time.perf_counter()
    for epoch in range(1, spec.epochs + 1):
        model.train()
        stats = train_epoch(step_model, loader, optimizer, LossWeights(), device, 10.0, scheduler)
        model.eval()
        val = evaluate(model, D.make_loader(valid_graphs, 32, shuffle=False), device)
        progress(f"pretraining foundation: epoch {epoch}/{spec.epochs}  loss {stats.loss:.4g}  "
                 f"val F RMSE {val['force_rmse_mev_a']:.1f} meV/A  ({time.perf_counter() - start:.0f} s)")
    return model.eval()


def embedded_foundation(files: "SystemFiles", rebuild: bool = False, progress: Callable[[str], None] = print,
                        warm_up: "Callable[[Callable[[str], None]], CompileWarmUp] | None" = None) -> Path:
    """Path of an embedded system's pretrained foundation (beside its data), pretraining it on first use.
    With `warm_up` (given `progress`, a compile warm-up: trainables.speed.warm_up), a fine-tuning
    run's compiled step is built in a second process meanwhile, where the recipe allows it."""
    path, info_path = files.root / FOUNDATION_FILE, files.root / "foundation.json"
    digest = _recipe_digest(PRETRAIN[files.size], files.pretrain, files.e0s)
    if not rebuild and path.is_file() and info_path.is_file() and json.loads(info_path.read_text()).get("digest") == digest:
        return path
    start, spec = time.perf_counter(), PRETRAIN[files.size]
    with (warm_up(progress) if warm_up and spec.warm_compile else contextlib.nullcontext()) as second_process:
        model = pretrain(files.pretrain, files.e0s, spec, progress,
                         on_initialised=second_process and second_process.start)
    save_model(model, path)
    info = {"spec": PRETRAIN[files.size].__dict__, "seconds": round(time.perf_counter() - start, 1),
            "parameters": sum(p.numel() for p in model.parameters()), "digest": digest}
    info_path.write_text(json.dumps(info, indent=2))
    return path


# Raised when pretraining changes in a way PretrainSpec does not show (2: no partial last batch).
RECIPE_VERSION = 2


def _recipe_digest(spec: PretrainSpec, *paths: Path) -> str:
    """Hash of the pretraining inputs and recipe: a rebuilt corpus or a changed recipe invalidates
    the cached foundation (and only it: the data stay cached)."""
    recipe = {f.name: getattr(spec, f.name) for f in fields(spec) if f.metadata.get("recipe", True)}
    digest = hashlib.sha256(json.dumps({"spec": recipe, "recipe": RECIPE_VERSION}, sort_keys=True).encode())
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
