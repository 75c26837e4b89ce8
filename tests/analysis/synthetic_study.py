"""A synthetic study on disk, laid out as the engine writes it: `<storage>/<name>/manifest.json`
and `results/scores-*.parquet`, `results/curves-*.parquet` (two part files each, one with an extra
column and an all-null parent_trial_id, as real part files may be).

3 optimizers x 2 learning rates x 3 seeds x 3 test sets of first-order trials, with known values:
force RMSE = FORCE[optimizer] * LR_FACTOR[lr] * TEST_FACTOR[test_set] + seed, energy = force / 10.
lamb at lr 1e-3, seed 2 diverged. adam and adamw at lr 1e-3, seeds 0 and 1, are refined by L-BFGS:
adam's force RMSE drops by 10%, adamw's rises by 5%.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

OPTIMIZERS = ("adam", "adamw", "lamb")
LRS = (1e-3, 1e-4)
SEEDS = (0, 1, 2)
TEST_SETS = ("val", "300K", "1200K")
FORCE = {"adam": 40.0, "adamw": 36.0, "lamb": 50.0}
WALL = {"adam": 100.0, "adamw": 110.0, "lamb": 60.0}
LR_FACTOR = {1e-3: 1.0, 1e-4: 1.5}
TEST_FACTOR = {"val": 1.0, "300K": 1.2, "1200K": 2.0}
LBFGS_FACTOR = {"adam": 0.9, "adamw": 1.05}
DIVERGED = ("lamb", 1e-3, 2)
EPOCHS = 5
LBFGS_ITERATIONS = 4


def trial_id(optimizer: str, lr: float, seed: int) -> str:
    return f"{optimizer}_lr{lr:g}_s{seed}"


def force(optimizer: str, lr: float, seed: int, test_set: str) -> float:
    return FORCE[optimizer] * LR_FACTOR[lr] * TEST_FACTOR[test_set] + seed


def _config(optimizer, lr, seed, stage="first_order", parent=None, trial=None):
    return dict(study="synthetic", trial_id=trial or trial_id(optimizer, lr, seed), stage=stage,
                parent_trial_id=parent, optimizer=optimizer, lr=lr, seed=seed, system="biphenyl-xtb",
                mode="replay")


def _score(config, test_set, value, wall, status="ok"):
    return dict(**config, test_set=test_set, energy_rmse_mev_atom=value / 10, force_rmse_mev_a=value,
                wall_time_s=wall, steps=EPOCHS, status=status, error=None)


def first_order_scores() -> list[dict]:
    rows = []
    for optimizer in OPTIMIZERS:
        for lr in LRS:
            for seed in SEEDS:
                diverged = (optimizer, lr, seed) == DIVERGED
                for test_set in TEST_SETS:
                    value = float("nan") if diverged else force(optimizer, lr, seed, test_set)
                    rows.append(_score(_config(optimizer, lr, seed), test_set, value, WALL[optimizer] + seed,
                                       "diverged" if diverged else "ok"))
    return rows


def lbfgs_scores() -> list[dict]:
    rows = []
    for optimizer, factor in LBFGS_FACTOR.items():
        for seed in (0, 1):
            parent = trial_id(optimizer, 1e-3, seed)
            config = _config(optimizer, 1e-3, seed, "lbfgs", parent, f"{parent}_lbfgs")
            for test_set in TEST_SETS:
                rows.append(_score(config, test_set, force(optimizer, 1e-3, seed, test_set) * factor, 20.0)
                            | {"device": "cpu"})
    return rows


def curve_rows() -> list[dict]:
    rows = []
    for optimizer in OPTIMIZERS:
        for lr in LRS:
            for seed in SEEDS:
                final = force(optimizer, lr, seed, "val")
                for step in range(EPOCHS):
                    value = final * (1 + 2.0 / (step + 1))
                    rows.append(dict(**_config(optimizer, lr, seed), step=step, loss=value / 5,
                                     val_energy_rmse_mev_atom=value / 10, val_force_rmse_mev_a=value,
                                     wall_time_s=10.0 * (step + 1), grad_norm=None, step_length=None,
                                     fevals=None, damped=None))
    return rows


def lbfgs_curve_rows() -> list[dict]:
    rows = []
    for optimizer, factor in LBFGS_FACTOR.items():
        for seed in (0, 1):
            parent = trial_id(optimizer, 1e-3, seed)
            start, end = force(optimizer, 1e-3, seed, "val"), force(optimizer, 1e-3, seed, "val") * factor
            for step in range(LBFGS_ITERATIONS):
                value = start + (end - start) * step / (LBFGS_ITERATIONS - 1)
                rows.append(dict(**_config(optimizer, 1e-3, seed, "lbfgs", parent, f"{parent}_lbfgs"), step=step,
                                 loss=value / 5, val_energy_rmse_mev_atom=value / 10, val_force_rmse_mev_a=value,
                                 wall_time_s=5.0 * (step + 1), grad_norm=1.0 / (step + 1), step_length=0.5,
                                 fevals=step + 2, damped=step == 0))
    return rows


def write_study(storage: Path, name: str = "synthetic") -> Path:
    """Write the synthetic study under `storage` and return its folder."""
    results = storage / name / "results"
    results.mkdir(parents=True)
    (storage / name / "manifest.json").write_text(json.dumps({"name": name}))
    pq.write_table(pa.Table.from_pylist(first_order_scores()), results / "scores-000.parquet")
    pq.write_table(pa.Table.from_pylist(lbfgs_scores()), results / "scores-001.parquet")
    curves = curve_rows()
    pq.write_table(pa.Table.from_pylist(curves[:45]), results / "curves-000.parquet")
    pq.write_table(pa.Table.from_pylist(curves[45:] + lbfgs_curve_rows()), results / "curves-001.parquet")
    return storage / name
