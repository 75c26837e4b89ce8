"""The evaluate stage: one evaluation trial per finished model of the stages before
(`trainables.properties`), whose rows go to the properties table under the trial and stage of the
model. Its structures and reference measurements are the driver's, computed once per study and
cached in the study folder (`REFERENCES_FILE`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ray import tune

from search_spaces import PROPERTY_FILES, SearchSpace
from study.engine import REUSE_ACTORS, StudyContext, fit, stage_tuner, trial_error_message, trial_meta, with_resources
from study.points import later_stage_space, stage_config
from study.results import property_rows, write_study_text
from study.settings import Launch
from study.trials import evaluate_trainable
from trainables.core.config import FinetuneConfig

REFERENCES_FILE = "property_references.json"


class PropertyRowsCallback(tune.Callback):
    """Turns an evaluation trial's report into property rows, under the trial and stage of the model
    it evaluated; a trial that raised (not a bad model: that is a status in its rows) gets a
    "failed" row for every property of its evaluators, with the error."""

    def __init__(self, ctx: StudyContext):
        self.ctx = ctx

    def _meta(self, trial) -> dict[str, Any]:
        config = stage_config(trial.config)
        return trial_meta(self.ctx, config["model_trial_id"], config["model_stage"], config)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("kind") == "properties":
            rows = json.loads(result["rows_json"])
            self.ctx.store.add("properties", property_rows(self._meta(trial), rows, trial.trial_id))

    def on_trial_error(self, iteration, trials, trial, **info):
        from trainables.properties import FAILED, PropertySettings, get_evaluator
        from trainables.properties.base import Outcome

        outcome = Outcome(None, None, FAILED, trial_error_message(trial))
        settings = PropertySettings.from_dict(stage_config(trial.config)["properties"])
        rows = [row for name in settings.evaluators for row in get_evaluator(name).all_rows(outcome)]
        self.ctx.store.add("properties", property_rows(self._meta(trial), rows, trial.trial_id))


def finished_models(grids: dict[str, tune.ResultGrid | None]) -> list[dict[str, Any]]:
    """The final checkpoints of every successful trial of `grids` (stage -> its results), as the
    evaluate stage's trial points."""
    points = []
    for stage, grid in grids.items():
        for r in grid or ():
            if r.error is None and r.metrics.get("status") == "ok" and r.checkpoint:
                config = stage_config(r.config)
                model = {k: v for k, v in config.items() if k not in ("parent_checkpoint", "lbfgs")}
                points.append({**model, "model_trial_id": r.metrics["trial_id"], "model_stage": stage,
                               "model_checkpoint": r.checkpoint.path})
    return points


def evaluate_param_space(grids: dict[str, tune.ResultGrid | None], space: SearchSpace) -> dict[str, Any] | None:
    models = finished_models(grids)
    return later_stage_space([{**model, "properties": space.property_settings} for model in models])


def property_inputs(ctx: StudyContext, space: SearchSpace, config: FinetuneConfig):
    """The study's evaluated structures and reference measurements: the embedded system's (its
    labeller's references), or a user's files from [properties] (without a labeller: the files'
    own references, and a one-line note when there are no structures). The references are
    computed once and cached in the study folder (`REFERENCES_FILE`) with the settings they were
    computed for."""
    from trainables import properties as P

    settings = P.PropertySettings.from_dict(space.property_settings)
    if config.train_file is None:
        from trainables.embedded import build_system, default_system_name

        files = build_system(config.system or default_system_name(), config.data_size, progress=lambda _: None)
        structures = P.embedded_structures(files)
        compute = lambda: P.embedded_references(files, structures, settings)  # noqa: E731
    else:
        structures = P.user_structures(space.property_files)
        compute = lambda: P.user_references(space.property_files, structures, settings)  # noqa: E731
        if structures.minimum is None and structures.cubic_cell is None and not structures.profile:
            print("evaluate: no structures for a user's data (give them in [properties]: "
                  f"{', '.join(PROPERTY_FILES)}); every evaluator is recorded as skipped", file=sys.stderr)
    references = cached_references(ctx.folder / REFERENCES_FILE, settings.to_dict(), compute)
    return without_calculators(structures), references


def without_calculators(structures):
    """The structures as plain atoms for the trials (a labeller's calculator, xTB's, does not pickle)."""
    def plain(atoms):
        return None if atoms is None else atoms.copy()  # Atoms.copy leaves the calculator out

    return type(structures)(minimum=plain(structures.minimum), cubic_cell=plain(structures.cubic_cell),
                            profile=tuple(plain(a) for a in structures.profile))


def cached_references(path: Path, settings: dict[str, Any], compute) -> dict[str, Any]:
    """`compute()`'s references, read from `path` when they were computed for the same settings."""
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("settings") == settings:
            return cached["references"]
    references = compute()
    write_study_text(path, json.dumps({"settings": settings, "references": references}))
    return references


def run_evaluate(ctx: StudyContext, launch: Launch, grids: dict[str, tune.ResultGrid | None]) -> tune.ResultGrid | None:
    """One evaluation trial per finished model of `grids` (stage -> its results), with the same
    resources as the other stages."""
    param_space = evaluate_param_space(grids, launch.space)
    if param_space is None:
        return None
    structures, references = property_inputs(ctx, launch.space, launch.config)
    trainable = with_resources(evaluate_trainable, launch.resources, structures=structures, references=references)
    tuner = stage_tuner(ctx, launch, "evaluate", trainable, param_space, tune.TuneConfig(reuse_actors=REUSE_ACTORS),
                   callback=PropertyRowsCallback(ctx))
    return fit(tuner, ctx.store)
