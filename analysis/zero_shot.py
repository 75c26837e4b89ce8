"""The zero-shot check: is the foundation's energy reference the data's?

Every trial scores the foundation before fine-tuning on the validation set (`val_before`, with the
run's isolated-atom energies). A foundation trained on another level of theory (xTB against DFT,
PBE against a hybrid) or E0s that do not belong to the data put every energy off by an amount per
element: the zero-shot energy RMSE is then hundreds of meV/atom, fine-tuning spends its budget
shifting energies, and the energy scores say more about the reference than about the optimizers.
Pure functions of the score rows.
"""

from __future__ import annotations

import math

import pandas as pd

# A foundation whose reference matches the data starts within tens of meV/atom of it (MACE-MP-0 on
# new PBE data, MACE-OFF on new wB97M data); beyond this the reference itself is off.
FAR_ENERGY_RMSE_MEV_ATOM = 50.0

ADVICE = ("the foundation's energies are far from the data's: its energy reference differs (another "
          "level of theory, or E0s that are not the data's). Try e0s = \"estimated\" (the foundation's E0s "
          "shifted per element to fit the training energies), the data's own isolated-atom energies "
          "(e0s_file), or a foundation trained on the same level of theory")


def zero_shot_scores(scores: pd.DataFrame) -> dict[str, float] | None:
    """The foundation's errors on the validation set before fine-tuning (the same for every trial),
    and the fine-tuned models' best; None when the rows have no `val_before`."""
    before = scores[(scores["test_set"] == "val_before") & (scores["status"] == "ok")]
    if before.empty:
        return None
    after = scores[(scores["test_set"] == "val") & (scores["status"] == "ok")]
    first = before.iloc[0]
    return {"energy_rmse_mev_atom": float(first.get("energy_rmse_mev_atom", math.nan)),
            "force_rmse_mev_a": float(first.get("force_rmse_mev_a", math.nan)),
            "best_energy_rmse_mev_atom": float(after["energy_rmse_mev_atom"].min()) if len(after) else math.nan,
            "best_force_rmse_mev_a": float(after["force_rmse_mev_a"].min()) if len(after) else math.nan}


def zero_shot_lines(scores: pd.DataFrame) -> list[str]:
    """One line with the zero-shot and best fine-tuned validation errors, and the advice when the
    foundation's energies are far from the data's; [] without `val_before` rows."""
    found = zero_shot_scores(scores)
    if found is None:
        return []
    line = (f"zero-shot (the foundation before fine-tuning, on val): energy RMSE "
            f"{found['energy_rmse_mev_atom']:.1f} meV/atom, force RMSE {found['force_rmse_mev_a']:.1f} meV/A; "
            f"best fine-tuned: {found['best_energy_rmse_mev_atom']:.1f} meV/atom, "
            f"{found['best_force_rmse_mev_a']:.1f} meV/A")
    far = found["energy_rmse_mev_atom"] > FAR_ENERGY_RMSE_MEV_ATOM
    return [line, f"warning: {ADVICE}"] if far else [line]
