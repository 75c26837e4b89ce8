"""Multi-head replay fine-tuning: the replay set, its selection, and the exported task head.

In the paper's framework (Liu, Wang, Zhao, arXiv 2512.05489) a two-head model shares the
foundation's backbone: the replay head `PT_HEAD` is supervised on a small representative subset of
the pre-training data, which keeps general chemical knowledge in the backbone (against
catastrophic forgetting), while the task head `TASK_HEAD` learns the target. Both heads start as
copies of the foundation's readout; the replay head keeps the foundation's E0s, so at step 0 it
reproduces the foundation exactly. Replay configurations carry head `PT_HEAD` and weight c_n =
`replay_weight` in Eq. 1, and are mixed with the target's in one shuffled loader.

Selection of the N replay configurations (seeded by `split_seed`):
- `random`: N distinct configurations drawn uniformly;
- `fps`: farthest-point sampling (greedy max-min Euclidean distance, seeded first point) on one
  descriptor per structure, the mean over its atoms of the foundation's invariant node features
  (all layers, as mace's `get_descriptors(invariants_only=True)` gives them). mace's
  `fine_tuning_select` uses per-element means instead; the plain mean scales to large element
  tables and still separates chemistries, since the features embed the element.

Only what the configuration says runs: no learning-rate, EMA or loss changes as mace's CLI makes in
its multi-head mode, and no downloads of replay data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from e3nn import o3
from mace.modules.utils import extract_invariant
from mace.tools.scatter import scatter_mean
from mace.tools.scripts_utils import extract_config_mace_model, remove_pt_head

from trainables.core import data as D
from trainables.core.foundation import config_to_plain, foundation_elements
from trainables.errors import DataError
from trainables.files import cache_root, write_atomically

PT_HEAD = "pt_head"
TASK_HEAD = "Default"


def model_heads(mode: str) -> tuple[str, ...]:
    """Head names in mace's order (replay head first): graphs store a config's head as its index here."""
    return (PT_HEAD, TASK_HEAD) if mode == "replay" else (TASK_HEAD,)


def read_replay_data(path: Path, with_stress: bool) -> list[D.Labelled]:
    """The pre-training configurations to select from; labels are auto-detected (REF_* then ASE's)."""
    if not Path(path).is_file():
        raise DataError(f"replay_file not found: {path}")
    return D.read_labelled(path, D.LabelKeys(), with_stress)


def random_selection(count: int, samples: int, seed: int) -> list[int]:
    """`samples` distinct indices out of `count`, drawn uniformly with a seeded generator."""
    return sorted(np.random.default_rng(seed).choice(count, size=samples, replace=False).tolist())


def farthest_point_sampling(descriptors: np.ndarray, samples: int, seed: int) -> list[int]:
    """Greedy FPS: start at a seeded random row, then repeatedly add the row farthest (Euclidean)
    from everything chosen so far. Returns `samples` distinct row indices in the order chosen."""
    chosen = [int(np.random.default_rng(seed).integers(len(descriptors)))]
    distance = np.linalg.norm(descriptors - descriptors[chosen[0]], axis=1)
    for _ in range(samples - 1):
        distance[chosen] = -np.inf  # duplicates (distance 0) can never be chosen twice
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(descriptors - descriptors[chosen[-1]], axis=1))
    return chosen


def invariant_features(model: torch.nn.Module, node_feats: torch.Tensor) -> torch.Tensor:
    """The invariant (l=0) channels of every layer of mace's concatenated `node_feats`."""
    irreps = o3.Irreps(str(model.products[0].linear.irreps_out))
    num_invariant = irreps.dim // (irreps.lmax + 1) ** 2
    return extract_invariant(node_feats, num_layers=int(model.num_interactions),
                             num_features=num_invariant, l_max=irreps.lmax)


@torch.no_grad()
def structure_descriptors(foundation: torch.nn.Module, items: Sequence[D.Labelled],
                          batch_size: int = 32) -> np.ndarray:
    """One row per structure: the mean over its atoms of the foundation's invariant node features."""
    dtype = next(foundation.parameters()).dtype
    graphs = D.build_graphs(items, foundation_elements(foundation), float(foundation.r_max), dtype)
    rows = []
    for batch in D.make_loader(graphs, batch_size, shuffle=False):
        node_feats = foundation(batch.to_dict(), training=False, compute_force=False)["node_feats"]
        per_atom = invariant_features(foundation, node_feats)
        rows.append(scatter_mean(per_atom, batch.batch, dim=0, dim_size=batch.num_graphs))
    return torch.cat(rows).double().numpy()


# Bump when `structure_descriptors` changes what it computes: cached descriptors of older code are not read.
DESCRIPTORS_VERSION = "1"


def cached_structure_descriptors(foundation: torch.nn.Module, items: Sequence[D.Labelled]) -> np.ndarray:
    """`structure_descriptors`, kept in the data cache (`replay-descriptors/`) under a hash of the
    foundation (architecture and weights) and of the structures. FPS selection needs them at every
    study start and resume: 4 s for the embedded default's 2,400 pre-training structures, minutes for a
    MACE-MP foundation over a large replay file on a CPU. A missing or unreadable entry is computed
    again; a cache that cannot be written only costs the time."""
    path = descriptors_cache_path(foundation, items)
    with contextlib.suppress(OSError, ValueError):
        cached = np.load(path, allow_pickle=False)
        if cached.ndim == 2 and cached.shape[0] == len(items):
            return cached
    descriptors = structure_descriptors(foundation, items)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda tmp: tmp.write_bytes(_npy_bytes(descriptors)))
    return descriptors


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def descriptors_cache_path(foundation: torch.nn.Module, items: Sequence[D.Labelled]) -> Path:
    digest = hashlib.sha256(f"descriptors v{DESCRIPTORS_VERSION}".encode())
    # the architecture (avg_num_neighbors and the like are not in the state dict), in plain values
    digest.update(repr(sorted(config_to_plain(extract_config_mace_model(foundation)).items())).encode())
    for name, tensor in foundation.state_dict().items():
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    for item in items:
        atoms = item.atoms
        for array in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
            digest.update(np.ascontiguousarray(array).tobytes())
    return cache_root() / "replay-descriptors" / f"{digest.hexdigest()[:32]}.npy"


def check_replay_samples(samples: int, available: int) -> None:
    if samples > available:
        raise DataError(f"replay_samples={samples} but the replay data hold only {available} configurations")


def replay_indices(items: Sequence[D.Labelled], samples: int, method: str, seed: int,
                   foundation: torch.nn.Module) -> list[int]:
    """Indices of `samples` distinct configurations of `items` chosen by `method` ("fps" or "random")."""
    check_replay_samples(samples, len(items))
    if method == "random":
        return random_selection(len(items), samples, seed)
    return farthest_point_sampling(cached_structure_descriptors(foundation, items), samples, seed)


def select_replay(items: Sequence[D.Labelled], samples: int, method: str, seed: int,
                  foundation: torch.nn.Module) -> list[D.Labelled]:
    """The configurations at `replay_indices`."""
    return [items[i] for i in replay_indices(items, samples, method, seed, foundation)]


def label_replay(items: Sequence[D.Labelled], mode: str, weight: float) -> list[D.Labelled]:
    """Tag replay configurations for the replay head (the single head in naive mode) with weight c_n."""
    head = PT_HEAD if mode == "replay" else TASK_HEAD
    return [dataclasses.replace(item, head=head, weight=weight) for item in items]


def export_task_head(model: torch.nn.Module) -> torch.nn.Module:
    """The task head as a new single-head model on the CPU (mace's `remove_pt_head`), in the model's
    dtype and eval mode, usable with `mace.calculators.MACECalculator(models=...)` and `save_model`.
    A single-head model (naive mode) is returned itself, in eval mode."""
    if len(getattr(model, "heads", [TASK_HEAD])) == 1:
        return model.eval()
    dtype = next(model.parameters()).dtype
    with D.default_dtype(dtype):  # remove_pt_head builds the new model in the default dtype
        single = remove_pt_head(model, head_to_keep=TASK_HEAD)
    return single.to(dtype).eval()
