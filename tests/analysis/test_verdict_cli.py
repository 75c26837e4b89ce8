"""`compare`, `ranks` and `profiles` on a study on disk: the lr chosen on validation by default,
the alternatives behind flags, the foundation's reference rows left out."""

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synthetic_study import first_order_scores

from analysis.cli import main


@pytest.fixture(scope="module")
def with_reference(tmp_path_factory):
    """The synthetic study's first-order scores plus the foundation's replay_before row on every
    trial (the same value everywhere, as the engine writes it)."""
    folder = tmp_path_factory.mktemp("reference") / "study"
    (folder / "results").mkdir(parents=True)
    rows = first_order_scores()
    reference = [row | {"test_set": "replay_before", "force_rmse_mev_a": 99.0, "energy_rmse_mev_atom": 9.9}
                 for row in {r["trial_id"]: r for r in rows}.values() if row["status"] == "ok"]
    pq.write_table(pa.Table.from_pylist(rows + reference), folder / "results" / "scores.parquet")
    return folder


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(arg) for arg in args])
    return code, capsys.readouterr().out


def test_compare_names_the_lrs_validation_chose_and_the_next_one_to_try(capsys, with_reference):
    code, out = run(capsys, "compare", with_reference)
    assert code == 0 and "replay_before" not in out
    assert ("lr chosen on validation (force_rmse_mev_a on val): adamw 0.001 (the largest of its grid: try 0.002 "
            "next), adam 0.001 (the largest of its grid: try 0.002 next), lamb 0.0001 (the smallest of its grid: try "
            "5e-05 next).") in out.splitlines()
    _, by_lr = run(capsys, "compare", with_reference, "--by-lr")
    assert "lr chosen on validation" not in by_lr and "optimizers paired at the same learning rate" in by_lr


def test_a_baseline_at_one_lr_is_a_solver_of_its_own(capsys, with_reference):
    code, csv = run(capsys, "compare", with_reference, "--each-lr", "--baseline", "adam@0.001", "--format", "csv")
    table = pd.read_csv(io.StringIO(csv))
    assert code == 0 and set(table["baseline"]) == {"adam@0.001"}
    assert table.query("optimizer == 'adamw@0.001' and test_set == 'val'")["difference"].item() == -4.0


def test_the_lr_flags_exclude_each_other(capsys, with_reference):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(with_reference), "--by-lr", "--each-lr"])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_ranks_and_profiles_leave_the_reference_out(capsys, with_reference):
    _, ranks = run(capsys, "ranks", with_reference, "--each-lr", "--format", "csv")
    assert "nan" not in ranks.lower()
    _, out = run(capsys, "ranks", with_reference)
    assert "replay_before" not in out and out.splitlines()[-1].startswith("ranking stable: mean Kendall tau 1.00")
    _, profiles = run(capsys, "profiles", with_reference, "--each-lr")
    assert "replay_before" not in profiles and "over 3 problems" in profiles  # val, 300K, 1200K
