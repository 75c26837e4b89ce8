"""DuckDB views over the same Parquet files load() reads."""

import pytest

from analysis import AnalysisError, connect, load, sql


def test_scores_view_agrees_with_load(study):
    result = sql("SELECT optimizer, count(*) AS n, avg(force_rmse_mev_a) AS force FROM scores "
                 "WHERE status = 'ok' AND stage = 'first_order' GROUP BY 1 ORDER BY 1", study)
    scores = load(study, status="ok", stage="first_order")
    expected = scores.groupby("optimizer")["force_rmse_mev_a"].agg(["size", "mean"])
    assert result["optimizer"].tolist() == ["adam", "adamw", "lamb"]
    assert result["n"].tolist() == expected["size"].tolist()
    assert result["force"].tolist() == pytest.approx(expected["mean"].tolist())


def test_curves_view_unions_part_files_by_name(study):
    with connect(study) as connection:
        damped = connection.execute("SELECT count(damped) FROM curves").fetchone()[0]
        columns = {row[0] for row in connection.execute("DESCRIBE scores").fetchall()}
    assert damped == 16 and "device" in columns


def test_bad_query_and_no_results(study, tmp_path):
    with pytest.raises(AnalysisError, match="query failed: .*trials"):
        sql("SELECT * FROM trials", study)
    with pytest.raises(AnalysisError, match="no scores or curves results under"):
        connect(tmp_path)
