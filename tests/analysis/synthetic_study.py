"""Synthetic studies on disk, laid out as the engine writes them: `<storage>/<name>/manifest.json`
and `results/scores-*.parquet`, `results/curves-*.parquet` (two part files each, one with an extra
column and an all-null parent_trial_id, as real part files may be). `write_partial_study` writes a
second study, whose test sets carry energies only, forces only, or are the foundation's own scores.

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


# A study whose test sets carry different labels, as public benchmark sets do: "dimers", an energy-only
# path of two curves (H-H and C-C dimer curves: no forces), "forces", a forces-only set (no energies),
# and the foundation's scores before fine-tuning, "val_before" and "replay_before" (equal for every trial).
# Same optimizers, lrs, seeds, diverged trial and L-BFGS refinements as above, on val and these sets.
PARTIAL_TEST_SETS = ("val", "dimers", "forces", "val_before", "replay_before")
CURVES = {"H-H": (40.0, 0.0, 25.0, 60.0), "C-C": (0.0, 15.0, 90.0)}  # reference, meV above each curve's lowest
# Predicted = reference * (1 + SKEW[curve] * force / 100): H-H overshoots, C-C undershoots more.
SKEW = {"H-H": 0.5, "C-C": -1.0}
BEFORE = {"val_before": 200.0, "replay_before": 150.0}  # the foundation's force RMSE


def predicted_profile(value: float) -> dict[str, list[float]]:
    """Each curve's predicted profile for a trial whose val force RMSE is `value`."""
    return {curve: [r * (1 + SKEW[curve] * value / 100) for r in reference] for curve, reference in CURVES.items()}


def profile_columns(value: float) -> dict:
    """A profile test set's score columns, as the engine writes them (lists as JSON, in file order)."""
    predicted = predicted_profile(value)
    pairs = [(p, r, curve) for curve in CURVES for p, r in zip(predicted[curve], CURVES[curve])]
    errors = [p - r for p, r, _ in pairs]
    barrier = [max(predicted[curve]) - max(CURVES[curve]) for curve in CURVES]
    return dict(rel_energy_rmse_mev=(sum(e * e for e in errors) / len(errors)) ** 0.5,
                rel_energy_max_error_mev=max(map(abs, errors)), barrier_error_mev=max(barrier, key=abs),
                profile_predicted_mev=json.dumps([p for p, _, _ in pairs]),
                profile_reference_mev=json.dumps([r for _, r, _ in pairs]),
                profile_curve=json.dumps([curve for _, _, curve in pairs]))


def _partial_score(val_row: dict, test_set: str) -> dict:
    """The row of `test_set` for the trial whose val row is `val_row`."""
    value = val_row["force_rmse_mev_a"]
    row = val_row | dict(test_set=test_set) | dict.fromkeys(profile_columns(0.0))
    if test_set in BEFORE:
        return row | dict(energy_rmse_mev_atom=BEFORE[test_set] / 10, force_rmse_mev_a=BEFORE[test_set])
    if test_set == "dimers":
        row |= dict(energy_rmse_mev_atom=value / 4, force_rmse_mev_a=float("nan"))
        return row | profile_columns(value) if row["status"] == "ok" else row
    if test_set == "forces":
        return row | dict(energy_rmse_mev_atom=float("nan"), force_rmse_mev_a=value * 1.3)
    return row


def partial_scores(val_rows: list[dict]) -> list[dict]:
    """Rows of every `PARTIAL_TEST_SETS` set for the trials of `val_rows` (val's), their errors derived from val's."""
    return [_partial_score(row, test_set) for row in val_rows if row["test_set"] == "val"
            for test_set in PARTIAL_TEST_SETS]


def write_study(storage: Path, name: str = "synthetic") -> Path:
    """Write the synthetic study under `storage` and return its folder."""
    curves = curve_rows()
    return _write(storage / name, scores=(first_order_scores(), lbfgs_scores()),
                  curves=(curves[:45], curves[45:] + lbfgs_curve_rows()))


def write_partial_study(storage: Path, name: str = "partial") -> Path:
    """Write the study of energy-only, forces-only and reference test sets under `storage`; return its folder."""
    return _write(storage / name, scores=(partial_scores(first_order_scores()), partial_scores(lbfgs_scores())),
                  curves=(curve_rows() + lbfgs_curve_rows(),))


def _write(folder: Path, **parts: tuple[list[dict], ...]) -> Path:
    """`folder`/manifest.json and `results/<table>-<i>.parquet` for each table's parts."""
    (folder / "results").mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"name": folder.name}))
    for table, rows in parts.items():
        for i, part in enumerate(rows):
            pq.write_table(pa.Table.from_pylist(part), folder / "results" / f"{table}-{i:03d}.parquet")
    return folder
