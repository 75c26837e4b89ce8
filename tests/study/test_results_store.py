"""Parquet results: keyed rows without duplicates, and a write killed half-way leaves the previous
file readable."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from study.results import ResultsStore, StorageError, write_study_text

WRITER = """
import sys
from study.results import ResultsStore
store = ResultsStore(sys.argv[1])
big = "x" * 2000
for i in range(10**6):
    store.add("curves", [{"trial_id": f"t{i}", "stage": "first_order", "step": j, "note": big} for j in range(200)])
    print(i, flush=True)
"""


def test_rows_are_keyed_and_survive_a_new_store(tmp_path):
    store = ResultsStore(tmp_path)
    row = {"trial_id": "a", "stage": "first_order", "test_set": "val", "force_rmse_mev_a": 1.0}
    store.add("scores", [row, {**row, "test_set": "300K"}])
    store.add("scores", [{**row, "force_rmse_mev_a": 2.0}])  # same key: replaced, not appended
    again = ResultsStore(tmp_path)
    table = pq.read_table(tmp_path / "scores.parquet").to_pylist()
    assert len(table) == 2 and {r["force_rmse_mev_a"] for r in table} == {1.0, 2.0}
    assert again.has_final("a", "first_order") and not again.has_final("b", "first_order")


def test_rows_held_back_reach_the_file_at_the_next_flush(tmp_path):
    store = ResultsStore(tmp_path)
    point = {"trial_id": "a", "stage": "first_order", "step": 1, "loss": 0.5}
    store.add("curves", [point], flush=False)
    store.add("curves", [{**point, "step": 2}], flush=False)
    assert not (tmp_path / "curves.parquet").exists() and len(store.rows("curves")) == 2
    store.flush()
    assert [r["step"] for r in pq.read_table(tmp_path / "curves.parquet").to_pylist()] == [1, 2]
    store.add("curves", [{**point, "step": 3}], flush=False)
    store.flush("scores")  # nothing held back there: the curves file stays as it was
    assert len(pq.read_table(tmp_path / "curves.parquet")) == 2
    store.flush("curves")
    assert len(ResultsStore(tmp_path).rows("curves")) == 3


def test_a_restored_store_is_the_open_store_of_its_folder(tmp_path):
    """Tune restores a resumed stage's callback, store included, from its pickled state; the next
    stage writes through the study's own store. Both must be one store, or the later write drops
    the resumed stage's rows."""
    import pickle

    pickled = pickle.dumps(ResultsStore(tmp_path))  # the callback's store, saved by the first run
    study = ResultsStore.open(tmp_path)  # the resumed run's store
    restored = pickle.loads(pickled)
    assert restored is study
    row = {"trial_id": "a", "stage": "first_order", "test_set": "val"}
    restored.add("scores", [row])  # the resumed first-order stage
    study.add("scores", [{**row, "trial_id": "b", "stage": "lbfgs"}])  # the next stage
    assert {r["stage"] for r in pq.read_table(tmp_path / "scores.parquet").to_pylist()} == {"first_order", "lbfgs"}
    elsewhere = pickle.loads(pickle.dumps(ResultsStore(tmp_path / "other")))  # no open store there: a fresh one
    assert elsewhere.folder == tmp_path / "other" and elsewhere.rows("scores") == []


def test_write_killed_half_way_leaves_the_previous_file_readable(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    for _ in range(3):  # a few complete writes, then kill it in the middle of a later one
        writer.stdout.readline()
    time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    rows = pq.read_table(tmp_path / "curves.parquet").to_pylist()
    assert len(rows) >= 3 * 200 and len(rows) % 200 == 0
    assert len({(r["trial_id"], r["step"]) for r in rows}) == len(rows)


def test_a_validation_within_an_epoch_keeps_its_fractional_epoch_as_step():
    from study.results import curve_row

    meta = {"trial_id": "t", "stage": "first_order"}
    within = curve_row(meta, {"epoch": 1.5, "steps": 6, "val_force_rmse_mev_a": 20.0, "train_time_s": 3.0})
    end = curve_row(meta, {"epoch": 2, "steps": 8, "val_force_rmse_mev_a": 18.0})
    assert (within["step"], within["steps"], within["train_time_s"]) == (1.5, 6.0, 3.0)
    assert end["step"] == 2 and isinstance(end["step"], int)


def test_a_study_text_that_cannot_be_written_is_a_storage_error_naming_it(tmp_path):
    write_study_text(tmp_path / "manifest.json", "{}")
    assert (tmp_path / "manifest.json").read_text() == "{}"
    blocked = tmp_path / "manifest.json" / "references.json"  # its folder is a file: an OSError, even as root
    with pytest.raises(StorageError, match=f"cannot write {blocked}: "):
        write_study_text(blocked, "{}")
    assert (tmp_path / "manifest.json").read_text() == "{}"
