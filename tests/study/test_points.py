"""A trial's point: the param spaces `study.points` builds, expanded as Tune expands them, read back."""

import pytest
from ray.tune.search.variant_generator import generate_variants

from search_spaces import get_space
from study.points import TrialPoint, first_order_param_space, later_stage_space, run_values, stage_config
from trainables.core.config import FinetuneConfig


def study_base(space) -> FinetuneConfig:
    return FinetuneConfig.from_dict({**space.fixed, "threads": 1})


def grid_configs(space) -> list[dict]:
    return [config for _, config in generate_variants(first_order_param_space(space, study_base(space)))]


def space_points(space) -> list[TrialPoint]:
    """The grid's points, from the space's own fields."""
    methods = list(space.lrs_by_method or space.methods) or [None]

    def lrs(optimizer, method):
        return (space.lrs_by_method[method] if space.lrs_by_method else
                [space.lr_by_optimizer[optimizer]] if space.lr_by_optimizer else space.lrs)

    return [TrialPoint(o, lr, s, m, p) for o in space.optimizers for m in methods for lr in lrs(o, m)
            for s in space.seeds for p in list(space.protocols) or [None]]


@pytest.mark.parametrize("name", ["smoke", "protocol_ablation", "method_benchmark"])
def test_a_grids_trials_read_back_as_its_points(name):
    space = get_space(name)
    read = [TrialPoint.of(config) for config in grid_configs(space)]
    assert len(read) == len(set(read)) and sorted(read, key=repr) == sorted(space_points(space), key=repr)


def test_a_trial_runs_its_protocols_overlay_and_its_method_in_place_of_the_studys_mode():
    protocols = grid_configs(get_space("protocol_ablation"))
    cosine = next(config for config in protocols if config["protocol"] == "cosine")
    assert run_values(cosine)["schedule"] == get_space("protocol_ablation").protocols["cosine"]["schedule"]
    methods = grid_configs(get_space("method_benchmark"))
    for config in methods:
        run = FinetuneConfig.from_dict(run_values(config))
        assert run.method == config["method"] and run.mode == run.method_spec.mode
        assert (run.optimizer, run.lr, run.seed) == (config["optimizer"], config["lr"], config["seed"])


def test_a_later_stage_reads_the_point_of_the_trial_it_continues():
    first = grid_configs(get_space("smoke"))[0]
    [later] = [config for _, config in generate_variants(later_stage_space([{**first, "parent_trial_id": "t0"}]))]
    assert TrialPoint.of(later) == TrialPoint(**{**vars(TrialPoint.of(first)), "parent_trial_id": "t0"})
    assert run_values(later) == run_values(first) and stage_config(later)["parent_trial_id"] == "t0"
    assert later_stage_space([]) is None


def test_an_optuna_trial_keeps_its_lr_under_its_optimizer():
    config = {"finetune": {}, "optimizer": "adam", "lr_adam": 3e-3, "seed": 1}
    assert TrialPoint.of(config) == TrialPoint("adam", 3e-3, 1)
    assert TrialPoint.of(config).label() == "adam lr 0.003 seed 1"
