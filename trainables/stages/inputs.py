"""Resolve a run's data and foundation into prepared, shareable inputs.

`prepare_inputs(config)` reads and checks every file once, builds the neighbour graphs and keeps
the foundation as a plain config + state_dict, so a study can prepare them once and hand the same
object (picklable) to every trial instead of re-parsing per trial.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from mace.data import AtomicData
from mace.data.utils import estimate_e0s_from_foundation
from mace.tools.scripts_utils import extract_config_mace_model
from mace.tools.utils import AtomicNumberTable

from trainables.core import data as D
from trainables.core.config import FinetuneConfig
from trainables.core.loss import SetReference
from trainables.core.foundation import (
    build_model,
    check_elements,
    config_to_plain,
    foundation_e0s,
    load_foundation,
    multihead_finetune_model,
)
from trainables.core.replay import (
    PT_HEAD,
    TASK_HEAD,
    check_replay_samples,
    label_replay,
    model_heads,
    read_replay_data,
    select_replay,
)
from trainables.embedded import build_system, default_system_name
from trainables.embedded.pretrain import embedded_foundation
from trainables.errors import ConfigError, DataError
from trainables.speed.warm_up import CompileWarmUp, worth_warming

WARM_COMPILE = "trainables.stages.warm_compile"  # the compile warm-up's second process (python -m)


@dataclass(frozen=True)
class Sources:
    """Where a run's data and foundation come from, after resolving embedded defaults."""

    train: Path
    valid: Path | None
    tests: dict[str, Path]
    e0s: Path | None
    foundation: str
    has_stress: bool
    replay: Path | None = None  # pre-training data to select the replay set from
    profile_tests: tuple[str, ...] = ()  # test sets that are a path or scan (scored on relative energies)


def score_names(test_names: list[str], has_replay: bool) -> list[str]:
    """The keys of a finished run's scores: "val", the named test sets, the validation set before
    fine-tuning ("val_before", the foundation's zero-shot score) and, with a replay set, the replay
    set after ("replay") and before ("replay_before") fine-tuning."""
    return ["val", *test_names, "val_before", *(["replay", "replay_before"] if has_replay else [])]


@dataclass
class PreparedInputs:
    """Checked, graph-built data plus the foundation as plain values (cheap to share and rebuild).

    With a replay set, `graphs["replay"]` holds it (scored like a test set, named "replay"), and in
    replay mode `graphs["train"]` is the target's training graphs followed by the replay graphs, so
    any objective over `graphs["train"]` (the shuffled loader, the L-BFGS stage) includes the replay
    term. `elements` then covers the replay set too, and `e0s` (the task head's) takes the
    foundation's E0s for elements found only in the replay set. `heads` are the model's heads.
    """

    elements: list[int]
    e0s: dict[int, float]
    dtype: str
    graphs: dict[str, list[AtomicData]]  # "train", "val" and every named test set
    has_stress: bool
    foundation_config: dict[str, Any]
    foundation_state: dict[str, torch.Tensor] = field(repr=False)
    sources: Sources | None = None
    heads: tuple[str, ...] = ("Default",)
    # every scored set's energies as read (float64) and a path's curves, in graph order
    references: dict[str, SetReference] = field(default_factory=dict)
    _template: torch.nn.Module | None = field(default=None, repr=False, compare=False)
    # scores of `initial_model()` by (device, eval batch size): the same for every run on these inputs
    initial_scores: dict[tuple[str, int], dict[str, dict[str, float]]] = field(
        default_factory=dict, repr=False, compare=False)
    # the same inputs for the other data mode (`inputs_for_mode`), built once per process
    mode_views: dict[str, "PreparedInputs"] = field(default_factory=dict, repr=False, compare=False)

    @property
    def test_names(self) -> list[str]:
        return [name for name in self.graphs if name not in ("train", "val")]

    @property
    def score_names(self) -> list[str]:
        """The keys of a finished run's `FinetuneResult.scores` (see `score_names`)."""
        return score_names([n for n in self.test_names if n != "replay"], "replay" in self.graphs)

    def foundation(self) -> torch.nn.Module:
        dtype = getattr(torch, self.dtype)
        with D.default_dtype(dtype):
            model = build_model(self.foundation_config)
        model.load_state_dict(self.foundation_state)
        return model.eval()

    def initial_model(self) -> torch.nn.Module:
        """The model fine-tuning starts from: the foundation on `elements` with one readout per head;
        the task head uses the run's `e0s`, the replay head the foundation's own, so that it
        reproduces the foundation."""
        if self._template is None:  # building e3nn's kernels takes ~1 s; a deep copy, ~50 ms
            self.build_template(self.foundation())
        return copy.deepcopy(self._template)

    def build_template(self, foundation: torch.nn.Module) -> None:
        """Build what `initial_model` copies from `foundation`, the model these inputs hold as
        `foundation_state` (converted to the inputs' dtype in place)."""
        head_e0s = {head: foundation_e0s(foundation) if head == PT_HEAD else self.e0s for head in self.heads}
        self._template = multihead_finetune_model(foundation, self.elements, head_e0s, getattr(torch, self.dtype))

    def __getstate__(self) -> dict[str, Any]:
        """Graphs packed (trainables.core.data.PackedGraphs): Ray ships these inputs to every worker."""
        return {**self.__dict__, "graphs": {name: D.PackedGraphs(graphs) for name, graphs in self.graphs.items()},
                "mode_views": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**state, "graphs": {name: packed.unpack() for name, packed in state["graphs"].items()}})



def inputs_for_mode(inputs: PreparedInputs, mode: str) -> PreparedInputs:
    """`inputs` for a run of data mode `mode` ("naive" or "replay"): themselves when they were
    prepared in it, else the same graphs with the other heads, built once and kept. A study whose
    methods mix both modes prepares its inputs once (with the replay set, which every method scores)."""
    if tuple(inputs.heads) == model_heads(mode):
        return inputs
    if mode not in inputs.mode_views:
        inputs.mode_views[mode] = with_heads_of_mode(inputs, mode)
    return inputs.mode_views[mode]


def with_heads_of_mode(inputs: PreparedInputs, mode: str) -> PreparedInputs:
    """A copy of `inputs` whose graphs name the heads of `mode` (trainables.core.replay.model_heads):
    the replay set on the replay head and mixed into "train" in replay mode, on the task head and
    only scored in naive mode. The graphs share their tensors; the initial model is built anew."""
    if mode == "replay" and "replay" not in inputs.graphs:
        raise ConfigError("a replay method needs the study's replay set: set replay_samples")
    heads = model_heads(mode)
    task, replay = heads.index(TASK_HEAD), heads.index(PT_HEAD if mode == "replay" else TASK_HEAD)
    replay_graphs = inputs.graphs.get("replay", [])
    target_train = inputs.graphs["train"][:len(inputs.graphs["train"]) - len(replay_graphs)] \
        if PT_HEAD in inputs.heads else inputs.graphs["train"]
    graphs = {name: _on_head(graphs, task) for name, graphs in inputs.graphs.items() if name != "replay"}
    graphs["train"] = _on_head(target_train, task)
    if replay_graphs:
        graphs["replay"] = _on_head(replay_graphs, replay)
        if mode == "replay":
            graphs["train"] = graphs["train"] + graphs["replay"]
    return dataclasses.replace(inputs, graphs=graphs, heads=heads, _template=None, initial_scores={}, mode_views={})


def _on_head(graphs: list[AtomicData], head: int) -> list[AtomicData]:
    """Shallow copies of `graphs` whose `head` index is `head` (every other tensor shared)."""
    copies = []
    for graph in graphs:
        moved = object.__new__(type(graph))
        moved.__dict__.update(graph.__dict__)
        moved.head = torch.full_like(graph.head, head)
        copies.append(moved)
    return copies


def data_files(config: FinetuneConfig) -> list[tuple[str, str]]:
    """(config key, path) of each data file a run on the user's data reads."""
    named = [("train_file", config.train_file), ("valid_file", config.valid_file), ("e0s_file", config.e0s_file),
             ("replay_file", config.replay_file)]
    named += [(f"test_files.{name}", path) for name, path in config.test_files.items()]
    return [(key, str(path)) for key, path in named if path is not None]


def check_data_files_exist(config: FinetuneConfig) -> None:
    """A missing data file is named with the config key that points at it."""
    for key, path in data_files(config):
        if not Path(path).is_file():
            where = "" if Path(path).is_absolute() else f" (relative to {Path.cwd()})"
            raise DataError(f"{key} = {path}: file not found{where}")


def resolve_sources(config: FinetuneConfig) -> Sources:
    if config.train_file is not None and config.foundation is None:
        raise ConfigError("a foundation model (file, mace_mp name or embedded:SYSTEM) is required with train_file")
    check_data_files_exist(config)
    if config.train_file is not None:
        foundation, corpus = resolve_foundation(config)
        return Sources(
            train=Path(config.train_file),
            valid=Path(config.valid_file) if config.valid_file else None,
            tests={name: Path(p) for name, p in config.test_files.items()},
            e0s=Path(config.e0s_file) if config.e0s_file else None,
            foundation=foundation,
            has_stress=config.stress_weight > 0,
            replay=Path(config.replay_file) if config.replay_file else corpus if config.has_replay_set else None,
            profile_tests=tuple(config.profile_tests),
        )
    return embedded_sources(config)


def resolve_foundation(config: FinetuneConfig) -> tuple[str, Path | None]:
    """The foundation to load and the pre-training corpus that comes with it: `embedded:SYSTEM`
    (`embedded` alone: the default system) is that system's foundation, built on first use, with
    its corpus as the default replay data; a file or mace_mp name brings none."""
    if not config.foundation_is_embedded:
        return str(config.foundation), None
    files = build_system(config.foundation.partition(":")[2] or default_system_name(), config.data_size)
    return str(embedded_foundation(files)), files.pretrain


def build_embedded_default(config: FinetuneConfig) -> None:
    """Build the embedded system and foundation that `config` runs on, where they are not cached
    yet (minutes, once per machine); nothing for a run on the user's own data."""
    if config.train_file is None:
        embedded_sources(config)


def compile_warm_up(config: FinetuneConfig) -> Callable[[Callable[[str], None]], CompileWarmUp] | None:
    """`config`'s compile warm-up beside the embedded foundation's pretraining, where one is worth it."""
    return partial(CompileWarmUp, config, WARM_COMPILE) if worth_warming(config) else None


def embedded_sources(config: FinetuneConfig) -> Sources:
    name = config.system or default_system_name()
    files = build_system(name, config.data_size)
    foundation = config.foundation or str(embedded_foundation(files, warm_up=compile_warm_up(config)))
    replay = Path(config.replay_file) if config.replay_file else files.pretrain if config.has_replay_set else None
    return Sources(train=files.train, valid=None, tests=dict(files.tests), e0s=files.e0s,
                   foundation=foundation, has_stress=files.has_stress and config.stress_weight > 0, replay=replay,
                   profile_tests=tuple(dict.fromkeys([*files.profile_tests, *config.profile_tests])))


def resolve_e0s(sources: Sources, keys: D.LabelKeys, foundation: torch.nn.Module, method: str = "auto",
                train: list[D.Labelled] | None = None) -> dict[int, float]:
    """The run's isolated-atom energies by `method` (FinetuneConfig.e0s): "auto" takes the E0 file,
    else IsolatedAtom entries of the training file, else the foundation's; "average" fits them to
    the `train` structures' energies; "estimated" corrects the foundation's so that its predictions
    fit them; "foundation" takes the foundation's."""
    if method == "average":
        return D.fitted_e0s(train or [])
    if method == "estimated":
        return estimated_e0s(foundation, train or [])
    if method == "foundation":
        return foundation_e0s(foundation)
    if sources.e0s is not None:
        return D.read_e0s(sources.e0s, keys)
    return D.isolated_atom_energies(sources.train, keys) or foundation_e0s(foundation)


def estimated_e0s(foundation: torch.nn.Module, train: list[D.Labelled]) -> dict[int, float]:
    """The foundation's E0s shifted by the per-element constants that best fit its predictions to
    the training energies (least squares; mace's `E0s="estimated"`, `estimate_e0s_from_foundation`):
    for a foundation trained on another level of theory, whose energies are off by an amount per
    element. Where the compositions do not tell the elements apart, the minimum-norm correction."""
    labelled = [item for item in train if item.has_energy]
    if not labelled:
        raise DataError("e0s = 'estimated' needs training structures with energies")
    dtype = next(foundation.parameters()).dtype
    with D.default_dtype(dtype), _quiet_logging():
        estimated = estimate_e0s_from_foundation(foundation, foundation_e0s(foundation),
                                                 [D.to_configuration(item) for item in labelled],
                                                 AtomicNumberTable(D.elements_of([labelled])))
    return {int(z): float(e) for z, e in estimated.items()}


@contextlib.contextmanager
def _quiet_logging():
    """mace logs every E0 at INFO; the run prints its own summary."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def read_sets(sources: Sources, config: FinetuneConfig, keys: D.LabelKeys) -> dict[str, list[D.Labelled]]:
    train = D.read_labelled(sources.train, keys, sources.has_stress)
    if sources.valid is not None:
        valid = D.read_labelled(sources.valid, keys, sources.has_stress)
    else:
        train, valid = D.seeded_split(train, config.valid_fraction, config.split_seed)
    sets = {"train": train, "val": valid}
    for name, path in sources.tests.items():  # a test set is scored on the labels it has
        sets[name] = D.read_labelled(path, keys, sources.has_stress, partial=True)
    return sets


def read_replay_items(sources: Sources) -> list[D.Labelled]:
    """The pre-training configurations to select the replay set from; [] when the run has none."""
    return [] if sources.replay is None else read_replay_data(sources.replay, sources.has_stress)


def replay_set(config: FinetuneConfig, items: list[D.Labelled], foundation: torch.nn.Module) -> list[D.Labelled]:
    """The selected, head-tagged replay configurations; [] when the run has no replay set."""
    if not items:
        return []
    selected = select_replay(items, config.replay_samples, config.replay_selection, config.split_seed, foundation)
    return label_replay(selected, config.mode, config.replay_weight)


def check_target_e0s(sources: Sources, e0s: dict[int, float], target_elements: list[int]) -> None:
    """Every element of the target data needs the run's own isolated-atom energy."""
    missing = sorted(set(target_elements) - set(e0s))
    if missing:
        raise DataError(f"no isolated-atom energy for atomic number(s) {missing} in {sources.e0s or sources.train}")


def task_e0s(e0s: dict[int, float], foundation: torch.nn.Module, elements: list[int]) -> dict[int, float]:
    """The task head's E0s: the run's for every element it has, the foundation's for elements that
    only the replay set has."""
    fallback = foundation_e0s(foundation)
    return {z: e0s[z] if z in e0s else fallback[z] for z in elements}


def build_all_graphs(config: FinetuneConfig, sets: dict[str, list[D.Labelled]], replay: list[D.Labelled],
                     elements: list[int], r_max: float) -> dict[str, list[AtomicData]]:
    """Graphs of every set; the replay set as "replay", and mixed into "train" in replay mode."""
    dtype, heads = getattr(torch, config.dtype), model_heads(config.mode)
    graphs = {name: D.build_graphs(items, elements, r_max, dtype, heads) for name, items in sets.items()}
    if replay:
        graphs["replay"] = D.build_graphs(replay, elements, r_max, dtype, heads)
        if config.mode == "replay":
            graphs["train"] = graphs["train"] + graphs["replay"]
    return graphs


@dataclass
class CheckedData:
    """Every file of a run read and checked, nothing built yet: what `check_data` returns once no
    input error is left to find, and `build_inputs` turns into PreparedInputs."""

    config: FinetuneConfig
    sources: Sources
    foundation: torch.nn.Module
    sets: dict[str, list[D.Labelled]]
    replay_items: list[D.Labelled]
    e0s: dict[int, float]
    curves: dict[str, tuple[str, ...]] = field(default_factory=dict)  # each profile test set's curves

    @property
    def score_names(self) -> list[str]:
        """What `PreparedInputs.score_names` will be, known before the graphs are built."""
        return planned_score_names(self.sources)


def planned_score_names(sources: Sources) -> list[str]:
    """What a run on `sources` scores (`PreparedInputs.score_names`), known before any file is read:
    the test sets, and the replay set where there is a replay file (which the check fails unless
    it holds a configuration)."""
    return score_names([n for n in sources.tests if n not in ("train", "val")], sources.replay is not None)


def check_data(config: FinetuneConfig, progress: Callable[[str], None] = print) -> CheckedData:
    """Read and check every file (data, labels, elements, E0s, the foundation): fast, and the step
    that raises for bad input. The embedded default is built here on first use. A replay set drawn
    from the embedded pre-training corpus, no `replay_file` given, is said in one line to `progress`."""
    sources = resolve_sources(config)
    keys = D.LabelKeys(config.energy_key, config.forces_key, config.stress_key)
    foundation = load_foundation(sources.foundation)
    sets = read_sets(sources, config, keys)
    target_elements = D.elements_of(list(sets.values()))
    replay_items = read_replay_items(sources)
    check_elements(foundation, D.elements_of([*sets.values(), replay_items]))  # any replay item may be selected
    if replay_items:
        check_replay_samples(config.replay_samples, len(replay_items))
        if config.replay_file is None:
            progress(f"replay set: {config.replay_samples} of the {len(replay_items)} configurations of the embedded "
                     f"pre-training corpus {sources.replay} (no replay_file given)")
    e0s = resolve_e0s(sources, keys, foundation, config.e0s, sets["train"])
    check_target_e0s(sources, e0s, target_elements)
    curves = {name: D.profile_curves(sets[name], config.profile_group_key, name, sources.tests.get(name, name))
              for name in sources.profile_tests}
    return CheckedData(config, sources, foundation, sets, replay_items, e0s, curves)


def set_references(sets: dict[str, list[D.Labelled]], curves: dict[str, tuple[str, ...]]) -> dict[str, SetReference]:
    """Every scored set's energies as read (float64) and, for paths and scans, its curves."""
    return {name: SetReference(D.reference_energies(items), curves.get(name))
            for name, items in sets.items() if name != "train"}


def build_inputs(checked: CheckedData) -> PreparedInputs:
    """Select the replay set, build every neighbour graph and the initial model: the slow step
    (seconds), which study.launch overlaps with starting Ray."""
    config, foundation = checked.config, checked.foundation
    replay = replay_set(config, checked.replay_items, foundation)
    elements = D.elements_of([*checked.sets.values(), replay])
    check_elements(foundation, elements)
    dtype = getattr(torch, config.dtype)
    inputs = PreparedInputs(
        elements=elements, e0s=task_e0s(checked.e0s, foundation, elements), dtype=config.dtype,
        has_stress=checked.sources.has_stress,
        graphs=build_all_graphs(config, checked.sets, replay, elements, float(foundation.r_max)),
        references=set_references({**checked.sets, "replay": replay}, checked.curves),
        foundation_config=config_to_plain(extract_config_mace_model(foundation)),
        foundation_state={k: v.detach().to(dtype) if v.is_floating_point() else v
                          for k, v in foundation.state_dict().items()},
        sources=checked.sources, heads=model_heads(config.mode),
    )
    # e3nn's kernels built once, from the loaded foundation rather than a second one rebuilt from
    # `foundation_state` (1.7 s on the embedded default); every trial, through Ray's pickling too, copies it
    inputs.build_template(foundation)
    return inputs


def prepare_inputs(config: FinetuneConfig) -> PreparedInputs:
    """Read, check and graph every data set once; load the foundation once."""
    return build_inputs(check_data(config))
