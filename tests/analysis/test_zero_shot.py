"""The zero-shot check on planted rows: a foundation whose energies are off by a constant per
element is told to fit its E0s; one that no offset explains is told so; a close one gets one line."""

import math

import pandas as pd

from analysis.zero_shot import zero_shot_lines


def _rows(zero_shot_energy: float, offset_removed: float = math.nan) -> pd.DataFrame:
    rows = [{"trial_id": f"t{seed}", "test_set": "val_before", "status": "ok", "energy_rmse_mev_atom": zero_shot_energy,
             "energy_rmse_offset_removed_mev_atom": offset_removed, "force_rmse_mev_a": 300.0} for seed in range(3)]
    rows += [{"trial_id": f"t{seed}", "test_set": "val", "status": "ok", "energy_rmse_mev_atom": 20.0 + seed,
              "force_rmse_mev_a": 90.0 - seed} for seed in range(3)]
    return pd.DataFrame(rows)


def test_a_foundation_off_by_a_constant_per_element_is_told_to_fit_its_e0s():
    lines = zero_shot_lines(_rows(1458.0, 7.7))
    assert lines[0] == ("zero-shot (the foundation before fine-tuning, on val): energy RMSE 1458.0 meV/atom (7.7 once "
                        "a constant per element is removed), force RMSE 300.0 meV/A; best fine-tuned: 20.0 meV/atom, "
                        "88.0 meV/A")
    assert lines[1].startswith("warning: the foundation's energies are off from the data's by a constant per element")
    assert 'e0s = "estimated"' in lines[1]


def test_a_foundation_far_from_the_data_without_an_offset_is_not_told_to_fit_e0s():
    lines = zero_shot_lines(_rows(400.0, 390.0))
    assert "no constant per element explains it" in lines[1] and "e0s" not in lines[1]


def test_a_close_foundation_gets_one_line_and_old_studies_none():
    assert len(zero_shot_lines(_rows(12.0, 3.0))) == 1
    assert zero_shot_lines(_rows(12.0).query("test_set != 'val_before'")) == []


def test_rows_without_the_offset_measure_get_advice_that_claims_neither_way():
    lines = zero_shot_lines(_rows(400.0))
    assert "no constant per element" not in lines[1] and "Where its energy reference differs" in lines[1]
