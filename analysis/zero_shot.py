"""The zero-shot check: is the foundation's energy reference the data's?

Every trial scores the foundation before fine-tuning on the validation set (`val_before`, with the
run's isolated-atom energies), with the energy RMSE left once the best constant per element is
taken off its errors (`energy_rmse_offset_removed_mev_atom`). A foundation trained on another
level of theory (xTB against DFT, PBE against a hybrid) or E0s that do not belong to the data put
every energy off by an amount per element: the zero-shot energy RMSE is then hundreds of
meV/atom, fine-tuning spends its budget shifting energies, and the energy scores say more about
the reference than about the optimizers.
Pure functions of the score rows.
"""

from __future__ import annotations

import math

import pandas as pd

# A foundation whose reference matches the data starts within tens of meV/atom of it (MACE-MP-0 on
# new PBE data, MACE-OFF on new wB97M data); beyond this its energies are far from the data's.
FAR_ENERGY_RMSE_MEV_ATOM = 50.0
# ... and when a constant per element takes at least this share of that error away, the difference
# is one of energy reference (level of theory, E0s) or a systematic shift, which E0s can absorb.
OFFSET_SHARE = 0.5

OFFSET_ADVICE = ("the foundation's energies are off from the data's by a constant per element: another energy "
                 "reference (level of theory, E0s that are not the data's) or a systematic shift, which "
                 "fine-tuning spends its budget on. Try e0s = \"estimated\" (the foundation's E0s shifted per "
                 "element to fit the training energies), or the data's own isolated-atom energies (e0s_file)")
UNSPLIT_ADVICE = ("the foundation's energies are far from the data's. Where its energy reference differs "
                  "(level of theory, E0s that are not the data's), e0s = \"estimated\" shifts its E0s per element "
                  "to fit the training energies")
FAR_ADVICE = ("the foundation's energies are far from the data's and no constant per element explains it: "
              "check the labels' units and keys, and whether this foundation suits the data")


def zero_shot_scores(scores: pd.DataFrame) -> dict[str, float] | None:
    """The foundation's errors on the validation set before fine-tuning (the same for every trial),
    what a per-element offset leaves of its energy error, and the fine-tuned models' best; None
    when the rows have no `val_before`."""
    before = scores[(scores["test_set"] == "val_before") & (scores["status"] == "ok")]
    if before.empty:
        return None
    after = scores[(scores["test_set"] == "val") & (scores["status"] == "ok")]
    first = before.iloc[0]
    return {"energy_rmse_mev_atom": float(first.get("energy_rmse_mev_atom", math.nan)),
            "offset_removed_mev_atom": float(first.get("energy_rmse_offset_removed_mev_atom", math.nan)),
            "force_rmse_mev_a": float(first.get("force_rmse_mev_a", math.nan)),
            "best_energy_rmse_mev_atom": float(after["energy_rmse_mev_atom"].min()) if len(after) else math.nan,
            "best_force_rmse_mev_a": float(after["force_rmse_mev_a"].min()) if len(after) else math.nan}


def zero_shot_lines(scores: pd.DataFrame) -> list[str]:
    """One line with the zero-shot and best fine-tuned validation errors, and, when the foundation's
    energies are far from the data's, what a per-element offset explains and what to try; []
    without `val_before` rows."""
    found = zero_shot_scores(scores)
    if found is None:
        return []
    energy, left = found["energy_rmse_mev_atom"], found["offset_removed_mev_atom"]
    offset = f" ({left:.1f} once a constant per element is removed)" if math.isfinite(left) else ""
    line = (f"zero-shot (the foundation before fine-tuning, on val): energy RMSE {energy:.1f} meV/atom{offset}, "
            f"force RMSE {found['force_rmse_mev_a']:.1f} meV/A; best fine-tuned: "
            f"{found['best_energy_rmse_mev_atom']:.1f} meV/atom, {found['best_force_rmse_mev_a']:.1f} meV/A")
    if not energy > FAR_ENERGY_RMSE_MEV_ATOM:
        return [line]
    if not math.isfinite(left):  # rows from before the offset was measured
        return [line, f"warning: {UNSPLIT_ADVICE}"]
    return [line, f"warning: {OFFSET_ADVICE if left <= (1 - OFFSET_SHARE) * energy else FAR_ADVICE}"]
