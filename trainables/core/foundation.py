"""Foundation models: loading, saving as state_dicts, and building the fine-tuning model.

Two file formats load:
- this project's own: `torch.save({"format": FORMAT, "model_config": {...}, "state_dict": ...})`,
  plain tensors and JSON-like values, read with `weights_only=True` (no code runs);
- whole pickled modules as mace ships them (MACE-MP-0, MACE-OFF). Unpickling a module runs code
  from the file: load only files you trust. Everything this project writes is a state_dict.
A mace_mp name (`small`, `medium`, `medium-mpa-0`, ...) loads from mace's cache, or is downloaded
when the internet is reachable; offline it fails at once asking for a local file.
"""

from __future__ import annotations

import os
import pickle
import socket
import urllib.parse
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from e3nn import o3
from mace import modules
from mace.calculators import foundations_models
from mace.tools.finetuning_utils import load_foundations_elements
from mace.tools.scripts_utils import extract_config_mace_model
from mace.tools.utils import AtomicNumberTable

from trainables.core.data import default_dtype
from trainables.errors import FoundationError
from trainables.files import write_atomically

FORMAT = "optistudy-mace-v1"
_CLASS_FIELDS = {
    "interaction_cls": modules.interaction_classes,
    "interaction_cls_first": modules.interaction_classes,
    "readout_cls": modules.readout_classes,
}
_IRREPS_FIELDS = ("hidden_irreps", "MLP_irreps", "edge_irreps")
_GATES = {fn: name for name, fn in modules.gate_dict.items()}


def config_to_plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """A mace model config (from `extract_config_mace_model`) as plain, weights_only-safe values."""
    plain: dict[str, Any] = {}
    for key, value in config.items():
        if key in _CLASS_FIELDS:
            plain[key] = value.__name__
        elif key in _IRREPS_FIELDS:
            plain[key] = None if value is None else str(value)
        elif key == "gate":
            plain[key] = _GATES.get(value, "None")
        elif isinstance(value, np.ndarray):
            plain[key] = value.tolist()
        elif isinstance(value, torch.Tensor):
            plain[key] = value.tolist()
        elif key == "cueq_config" or key == "oeq_config":
            continue  # kernel back-ends are chosen at load time, not stored
        else:
            plain[key] = value
    return plain


def config_from_plain(plain: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `config_to_plain`: the keyword arguments of `ScaleShiftMACE`."""
    config = dict(plain)
    for key, registry in _CLASS_FIELDS.items():
        config[key] = registry[plain[key]]
    for key in _IRREPS_FIELDS:
        config[key] = None if plain.get(key) is None else o3.Irreps(plain[key])
    config["gate"] = modules.gate_dict[plain.get("gate", "silu")]
    for key in ("atomic_energies", "atomic_inter_scale", "atomic_inter_shift"):
        config[key] = np.asarray(plain[key], dtype=float)
    config["atomic_numbers"] = [int(z) for z in plain["atomic_numbers"]]
    return config


def build_model(plain_config: Mapping[str, Any]) -> torch.nn.Module:
    return modules.ScaleShiftMACE(**config_from_plain(plain_config))


def save_model(model: torch.nn.Module, path: str | Path) -> Path:
    """Write `model` as config + state_dict (loadable with weights_only=True), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "model_config": config_to_plain(extract_config_mace_model(model)),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "trainable": [name for name, _ in model.named_parameters()],
    }
    return write_atomically(path, lambda tmp: torch.save(payload, tmp))


def _load_state_dict_file(path: Path) -> torch.nn.Module | None:
    """The model of a file `save_model` wrote; None for any other file (a pickled module, which the
    weights-only unpickler refuses with `UnpicklingError`, or no torch file at all: the pickled-module
    loader then says what it is)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, KeyError, EOFError, ValueError):
        return None  # not a torch archive (KeyError/EOFError/RuntimeError), or pickled objects
    if not (isinstance(payload, dict) and payload.get("format") == FORMAT):
        return None
    dtype = getattr(torch, payload.get("dtype", "float64"))
    with default_dtype(dtype):
        model = build_model(payload["model_config"])
    model.load_state_dict(payload["state_dict"])
    restore_trainable(model, payload.get("trainable", ()))
    return model


def restore_trainable(model: torch.nn.Module, names: Sequence[str]) -> None:
    """Turn the buffers listed in `names` back into parameters. mace's `load_foundations_elements`
    makes tensors trainable (the Bessel weights) that a freshly built model keeps as buffers."""
    parameters = dict(model.named_parameters())
    for name in names:
        if name in parameters:
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        tensor = owner._buffers.pop(attr)
        setattr(owner, attr, torch.nn.Parameter(tensor))


def _load_pickled_module(path: Path) -> torch.nn.Module:
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001  any unpickling failure means "not a model file"
        raise FoundationError(f"{path} is not a model file: {type(err).__name__}: {err}") from None
    if not (isinstance(model, torch.nn.Module) and hasattr(model, "atomic_numbers") and hasattr(model, "r_max")):
        raise FoundationError(f"{path} does not hold a MACE model (got {type(model).__name__})")
    return model


def _mace_mp_checkpoint(name: str) -> Path:
    url = foundations_models.mace_mp_urls[name]
    cached = Path(foundations_models.get_cache_dir()) / "".join(
        c for c in os.path.basename(url) if c.isalnum() or c == "_"
    )
    if cached.is_file():
        return cached
    host = urllib.parse.urlparse(url).hostname
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        raise FoundationError(
            f"mace_mp model {name!r} is not cached and {host} is unreachable (offline?); "
            "pass a local model file instead"
        ) from None
    return Path(foundations_models.download_mace_mp_checkpoint(name))


def load_foundation(source: str | Path) -> torch.nn.Module:
    """A foundation model from a local file (either format) or a mace_mp name, in eval mode on CPU."""
    path = Path(source)
    if not path.is_file():
        if str(source) in foundations_models.mace_mp_urls:
            path = _mace_mp_checkpoint(str(source))
        else:
            known = ", ".join(foundations_models.mace_mp_urls)
            raise FoundationError(f"foundation model not found: {source} (not a file; mace_mp names: {known})")
    model = _load_state_dict_file(path) or _load_pickled_module(path)
    return model.eval()


def foundation_elements(model: torch.nn.Module) -> list[int]:
    return [int(z) for z in model.atomic_numbers]


def foundation_e0s(model: torch.nn.Module) -> dict[int, float]:
    """The foundation's isolated-atom energies (first head), {Z: eV}."""
    energies = model.atomic_energies_fn.atomic_energies.detach().cpu().numpy().reshape(-1, len(model.atomic_numbers))
    return {z: float(e) for z, e in zip(foundation_elements(model), energies[0])}


def check_elements(model: torch.nn.Module, elements: Sequence[int]) -> None:
    missing = sorted(set(elements) - set(foundation_elements(model)))
    if missing:
        from ase.data import chemical_symbols

        names = ", ".join(chemical_symbols[z] for z in missing)
        raise FoundationError(f"the foundation model lacks element(s) {names} present in the data")


def finetune_model(foundation: torch.nn.Module, elements: Sequence[int], e0s: Mapping[int, float],
                   dtype: torch.dtype, heads: Sequence[str] = ("Default",)) -> torch.nn.Module:
    """A copy of the foundation restricted to `elements` (mace's `load_foundations_elements`),
    with the given isolated-atom energies on every head, readouts included, in `dtype`."""
    return multihead_finetune_model(foundation, elements, {head: e0s for head in heads}, dtype)


def multihead_finetune_model(foundation: torch.nn.Module, elements: Sequence[int],
                             head_e0s: Mapping[str, Mapping[int, float]], dtype: torch.dtype) -> torch.nn.Module:
    """The foundation restricted to `elements` with one readout per head, in the order of `head_e0s`.

    Every head starts as a copy of the foundation's readout (mace's `load_foundations_elements`,
    `load_readout=True`) and its scale and shift; `head_e0s[head]` gives that head's isolated-atom
    energies {Z: eV} and must cover `elements`. mace expects the replay head "pt_head" first.
    """
    check_elements(foundation, elements)
    foundation = foundation.to(dtype)
    config = extract_config_mace_model(foundation)
    heads = list(head_e0s)
    energies = np.array([[e0s[z] for z in elements] for e0s in head_e0s.values()], dtype=float)
    config.update(atomic_numbers=list(elements), num_elements=len(elements), heads=heads,
                  atomic_energies=energies[0] if len(heads) == 1 else energies)
    if len(heads) > 1:  # one scale and shift per head (a scalar cannot be indexed by head)
        for key in ("atomic_inter_scale", "atomic_inter_shift"):
            config[key] = np.full(len(heads), float(np.ravel(config[key])[0]))
    with default_dtype(dtype):
        model = modules.ScaleShiftMACE(**config)
    max_l = o3.Irreps(str(config["hidden_irreps"])).lmax
    model = load_foundations_elements(model, foundation, AtomicNumberTable(list(elements)),
                                      load_readout=True, max_L=max_l, default_dtype=dtype)
    # load_foundations_elements ends by copying every same-shaped foundation tensor, the E0s too
    # when the element count matches: put the run's own isolated-atom energies back.
    e0_buffer = model.atomic_energies_fn.atomic_energies
    e0_buffer.copy_(torch.as_tensor(config["atomic_energies"], dtype=e0_buffer.dtype).reshape(e0_buffer.shape))
    return model.to(dtype)

