"""An Optuna space: per-optimizer log-uniform learning rates within their ranges, ASHA on."""

import pyarrow.parquet as pq


def test_optuna_search_draws_each_lr_from_its_optimizers_range(cache_root, smoke_inputs, tmp_path, launch):
    space = tmp_path / "search.toml"
    space.write_text("""
search = "optuna"
num_samples = 4
seeds = [0]
adaptive = "asha"
[lr_ranges]
adam = [1e-4, 1e-3]
sgd = [1e-2, 5e-2]
[fixed]
data_size = "smoke"
epochs = 3
batch_size = 4
compile = false
""")
    done = launch(tmp_path / "studies", "--name", "search", space=str(space))
    assert done.returncode == 0, done.stderr[-3000:]
    scores = pq.read_table(tmp_path / "studies" / "search" / "results" / "scores.parquet").to_pandas()
    trials = scores.drop_duplicates("trial_id")
    assert len(trials) == 4 and set(trials.status) <= {"ok", "early_stopped"}
    ranges = {"adam": (1e-4, 1e-3), "sgd": (1e-2, 5e-2)}
    for row in trials.itertuples():
        low, high = ranges[row.optimizer]
        assert low <= row.lr <= high
