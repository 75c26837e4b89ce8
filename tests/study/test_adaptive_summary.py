"""The closing tables of a search with cells an adaptive study stopped: each optimizer once, at its lr
chosen on validation, its best lr found and its stopped trials counted, stopped cells labelled as
stopped at their epoch and not as failures."""

import math

import pyarrow as pa
import pyarrow.parquet as pq

from analysis.study_summary import study_summary
from analysis.tables import failed_rows, stopped_cells

# A search: each sampled lr its own; sgd's trial at 0.02 stopped at epoch 2, adam's at 3e-4 diverged.
TRIALS = [("adam", 1e-3, "ok", 30.0), ("adam", 2e-3, "ok", 34.0), ("adam", 3e-4, "diverged", math.nan),
          ("sgd", 3e-2, "ok", 45.0), ("sgd", 2e-2, "early_stopped", math.nan)]


def write_search(folder):
    rows = []
    for number, (optimizer, lr, status, force) in enumerate(TRIALS):
        for test_set, factor in (("val", 1.0), ("300K", 1.5)):
            rows.append(dict(study="search", trial_id=f"t{number}", stage="first_order", optimizer=optimizer,
                             lr=lr, seed=0, test_set=test_set, status=status, force_rmse_mev_a=force * factor,
                             energy_rmse_mev_atom=force * factor / 10, wall_time_s=10.0,
                             stopped_at_epoch=2.0 if status == "early_stopped" else None))
    (folder / "results").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "results" / "scores.parquet")
    return folder


def test_a_search_lists_each_optimizer_once_with_its_best_lr_and_stopped_trials(tmp_path):
    text = study_summary(write_search(tmp_path / "search"), 12.0)
    assert "best lr found (on validation): adam 0.001 (3 trials, 0 stopped early), sgd 0.03 (2 trials, 1 stopped " \
           "early)" in text
    assert "stopped early: sgd lr=0.02 at epoch 2 (1 seed)" in text
    assert "not ok: adam lr=0.0003 seed=0: diverged" in text and "early_stopped" not in text
    table = text.split("force RMSE (meV/A), stage first_order")[1].split("\n\n")[0]
    assert table.count("adam") == 1 and table.count("sgd") == 1  # one row each, not one per sampled lr


def test_stopped_trials_are_neither_failed_nor_finished(tmp_path):
    scores = pq.read_table(write_search(tmp_path / "search") / "results" / "scores.parquet").to_pandas()
    assert set(failed_rows(scores)["status"]) == {"diverged"}
    cells = stopped_cells(scores)
    assert cells[["optimizer", "lr", "seeds", "stopped_at_epoch"]].values.tolist() == [["sgd", 0.02, 1, 2.0]]


def test_the_report_of_a_search_gives_each_optimizer_once_and_its_best_lr(tmp_path):
    from analysis.report import summary_parts

    scores = pq.read_table(write_search(tmp_path / "search") / "results" / "scores.parquet").to_pandas()
    page = "".join(summary_parts(scores))
    assert "best lr found (on validation): adam 0.001 (3 trials, 0 stopped early)" in page
    assert "0.002" not in page  # adam's other sampled lr: no row of its own
