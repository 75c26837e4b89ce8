"""The Ray Tune wrappers' own pieces, with a real local Ray: checkpoint cadence and shared inputs."""

from pathlib import Path

import pytest
import ray
from ray import tune

from study.trials import SharedInputs, epoch_reporter


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 1024**2)
    yield
    ray.shutdown()


@pytest.mark.parametrize("every_s, checkpointed", [(0.0, 3), (3600.0, 0)])
def test_epoch_reports_carry_a_checkpoint_as_often_as_asked(local_ray, tmp_path, every_s, checkpointed):
    def three_epochs(config):  # nested, so that Ray pickles it by value (workers cannot import tests)
        report = epoch_reporter(config["every_s"])
        for epoch in range(1, 4):
            report({"epoch": epoch}, lambda folder, epoch=epoch: (Path(folder) / "epoch.txt").write_text(str(epoch)))

    tuner = tune.Tuner(three_epochs, param_space={"every_s": every_s},
                       run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    result = tuner.fit()[0]
    assert result.metrics["epoch"] == 3 and len(result.metrics_dataframe) == 3  # every epoch reported
    assert len(result.best_checkpoints) == checkpointed
    if checkpointed:
        with result.checkpoint.as_directory() as folder:
            assert (Path(folder) / "epoch.txt").read_text() == "3"


def test_shared_inputs_are_fetched_once_per_process(local_ray, smoke_inputs):
    shared = SharedInputs(smoke_inputs)
    first = shared.get()
    assert first is shared.get()  # the second trial in a reused actor gets the same object
    assert first.score_names == smoke_inputs.score_names
    other = SharedInputs(smoke_inputs)  # another study's inputs replace the cached ones
    assert other.get() is not first


def test_shared_inputs_reach_trials_that_started_before_them(local_ray, smoke_inputs):
    """study.launch starts the trials while it still builds the graphs: a trial's `get` waits for `put`."""
    shared = SharedInputs()

    @ray.remote(num_cpus=0)
    def trial(shared):  # nested: Ray pickles it by value
        return shared.get().score_names

    waiting = trial.remote(shared)
    ready, _ = ray.wait([waiting], timeout=3)
    assert not ready  # no inputs yet: the trial waits
    shared.put(smoke_inputs)
    assert ray.get(waiting, timeout=120) == smoke_inputs.score_names
