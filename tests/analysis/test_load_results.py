"""load() on a study written to disk as the engine lays it out."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synthetic_study import EPOCHS, LBFGS_ITERATIONS, LRS, OPTIMIZERS, SEEDS, TEST_SETS, write_study

from analysis import AnalysisError, load

N_FIRST_ORDER = len(OPTIMIZERS) * len(LRS) * len(SEEDS) * len(TEST_SETS)
N_LBFGS = 4 * len(TEST_SETS)


def test_study_folder_merges_part_files_and_keeps_extra_columns(study):
    scores = load(study)
    assert len(scores) == N_FIRST_ORDER + N_LBFGS
    assert scores["device"].isna().sum() == N_FIRST_ORDER  # only the second part file has it
    assert scores.loc[scores["stage"] == "lbfgs", "parent_trial_id"].notna().all()
    assert set(scores["status"]) == {"ok", "diverged"}


def test_results_folder_parquet_file_and_glob_are_accepted(study):
    assert len(load(study / "results")) == N_FIRST_ORDER + N_LBFGS
    assert len(load(study / "results" / "scores-000.parquet")) == N_FIRST_ORDER
    assert len(load(str(study.parent / "*"))) == N_FIRST_ORDER + N_LBFGS


def test_the_same_files_given_twice_are_read_once(study):
    assert len(load(study, study / "results")) == N_FIRST_ORDER + N_LBFGS


def test_several_studies_are_concatenated(tmp_path):
    for name in ("one", "two"):
        write_study(tmp_path, name)
    curves = load(tmp_path / "one", tmp_path / "two", table="curves")
    per_study = len(OPTIMIZERS) * len(LRS) * len(SEEDS) * EPOCHS + 4 * LBFGS_ITERATIONS
    assert len(curves) == 2 * per_study
    assert curves["damped"].notna().sum() == 2 * 4 * LBFGS_ITERATIONS


def test_filters_take_a_value_or_a_list(study):
    rows = load(study, stage="first_order", optimizer=["adam", "lamb"], lr=0.001, test_set="1200K", status="ok")
    assert len(rows) == 2 * len(SEEDS) - 1  # lamb's seed 2 diverged
    assert set(rows["optimizer"]) == {"adam", "lamb"} and set(rows["test_set"]) == {"1200K"}
    assert len(load(study, lr=[1e-4, 1e-3 * (1 + 1e-12)], stage="first_order")) == N_FIRST_ORDER


def test_folder_without_results_names_it(tmp_path):
    (tmp_path / "empty_study").mkdir()
    expected = r"no scores results in .*empty_study: expected .*empty_study/results/scores\*\.parquet"
    with pytest.raises(AnalysisError, match=expected):
        load(tmp_path / "empty_study")


def test_missing_path_and_pattern(tmp_path):
    with pytest.raises(AnalysisError, match="does not exist"):
        load(tmp_path / "nope")
    with pytest.raises(AnalysisError, match="no file or folder matches the pattern"):
        load(str(tmp_path / "nope*"))


def test_empty_filter_names_filter_and_values(study):
    with pytest.raises(AnalysisError, match=r"no rows with test_set in \[900K\]; available: val, 300K, 1200K"):
        load(study, test_set="900K")
    with pytest.raises(AnalysisError, match=r"no rows with optimizer in \[sgd, radam\]; available: adam, adamw, lamb"):
        load(study, optimizer=["sgd", "radam"])
    with pytest.raises(AnalysisError, match=r"no rows with lr in \[0.01\]; available: 0.001, 0.0001"):
        load(study, lr=0.01)


def test_filter_on_a_column_the_table_lacks(study):
    with pytest.raises(AnalysisError, match="cannot filter by test_set: the data has no column 'test_set'"):
        load(study, table="curves", test_set="val")


def test_required_column_missing_is_named(tmp_path, study):
    table = pq.read_table(study / "results" / "scores-000.parquet").drop_columns(["optimizer"])
    pq.write_table(table, tmp_path / "scores.parquet")
    with pytest.raises(AnalysisError, match="the scores table has no column 'optimizer'"):
        load(tmp_path)


def test_empty_and_corrupt_files(tmp_path, study):
    schema = pq.read_schema(study / "results" / "scores-000.parquet")
    pq.write_table(pa.Table.from_pylist([], schema=schema), tmp_path / "scores.parquet")
    with pytest.raises(AnalysisError, match="hold no rows"):
        load(tmp_path)
    (tmp_path / "scores.parquet").write_text("not parquet")
    with pytest.raises(AnalysisError, match="cannot read results"):
        load(tmp_path)


def test_unknown_table(study):
    with pytest.raises(AnalysisError, match="unknown table 'trials'; choose one of scores, curves"):
        load(study, table="trials")


def test_loaded_frame_is_plain_pandas(study):
    scores = load(study, test_set="val")
    assert isinstance(scores, pd.DataFrame) and list(scores.index) == list(range(len(scores)))
