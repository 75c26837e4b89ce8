"""The zero-shot check on planted rows: a foundation far from the data's energies is flagged."""

import pandas as pd

from analysis.zero_shot import zero_shot_lines


def _rows(zero_shot_energy: float) -> pd.DataFrame:
    rows = [{"trial_id": f"t{seed}", "test_set": "val_before", "status": "ok", "energy_rmse_mev_atom": zero_shot_energy,
             "force_rmse_mev_a": 300.0} for seed in range(3)]
    rows += [{"trial_id": f"t{seed}", "test_set": "val", "status": "ok", "energy_rmse_mev_atom": 20.0 + seed,
              "force_rmse_mev_a": 90.0 - seed} for seed in range(3)]
    return pd.DataFrame(rows)


def test_a_foundation_on_another_reference_is_flagged_with_what_to_try():
    lines = zero_shot_lines(_rows(1458.0))
    assert lines[0] == ("zero-shot (the foundation before fine-tuning, on val): energy RMSE 1458.0 meV/atom, "
                        "force RMSE 300.0 meV/A; best fine-tuned: 20.0 meV/atom, 88.0 meV/A")
    assert lines[1].startswith("warning: the foundation's energies are far from the data's") and 'e0s = "estimated"' in lines[1]


def test_a_matching_foundation_gets_one_line_and_old_studies_none():
    assert len(zero_shot_lines(_rows(12.0))) == 1
    assert zero_shot_lines(_rows(12.0).query("test_set != 'val_before'")) == []
