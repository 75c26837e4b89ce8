"""The words of a comparison table (`analysis.stats.paired_comparison`, `best_two`): how to read its
verdicts, and how many of each it holds. Pure functions shared by the CLI, the report page and the
recommendation, so all three say the same thing."""

from __future__ import annotations

import pandas as pd

from analysis.stats import (ALPHA, BETTER, BOOTSTRAP, HIGHER, LOWER, MIXED, N_RESAMPLES, NO_CLEAR, ONE_SEED, POWER,
                            RANGE, SEED, TEST, WORSE, min_seeds, smallest_p)

VERDICT_ORDER = (BETTER, WORSE, NO_CLEAR, LOWER, HIGHER, MIXED, ONE_SEED)


def verdict_note(table: pd.DataFrame) -> str:
    """How to read the verdicts, intervals and `seeds_needed` of `table` (rows of `with_verdicts`),
    with its numbers of paired seeds and of comparisons."""
    comparisons = int(table["p_value"].notna().sum())
    seeds = sorted(int(n) for n in table["n"].unique())
    floors = ", ".join(f"{smallest_p(n):.3g} with {n} seeds" for n in seeds)
    note = (f"Verdicts: '{BETTER}' or '{WORSE}' only where the {TEST} holds at {ALPHA:.0%} after Holm's "
            f"correction over the {comparisons} comparisons of this table; else '{NO_CLEAR}'. Its smallest "
            f"possible p is {floors}.")
    if (table["interval"] == RANGE).any():
        note += (f" Below {min_seeds(ALPHA)} seeds it cannot reach {ALPHA:g}: the interval is then the "
                 f"{RANGE} (the smallest to the largest paired difference) and the verdict says what the seeds "
                 f"showed, '{LOWER}', '{HIGHER}' or '{MIXED}': a consistent direction, not significance.")
    if (table["interval"] == BOOTSTRAP).any():
        note += f" {BOOTSTRAP.capitalize()}: {N_RESAMPLES} percentile resamples, generator seed {SEED}."
    return note + (f" seeds_needed: paired seeds that would settle an unsettled comparison, an estimate (normal "
                   f"approximation at {POWER:.0%} power, level {ALPHA:g} / {max(comparisons, 1)} comparisons, at "
                   "least the exact test's floor).")


def verdict_counts(table: pd.DataFrame, by: str = "optimizer") -> pd.DataFrame:
    """How many comparisons of each `by` value got each verdict, columns in `VERDICT_ORDER`."""
    counts = pd.crosstab(table[by], table["verdict"]).reindex(table[by].drop_duplicates())
    return counts[[word for word in VERDICT_ORDER if word in counts.columns]]


def counted_words(counts: pd.DataFrame) -> str:
    """'counts of: lower on every seed, mixed' for the columns of `verdict_counts`."""
    return "counts of: " + ", ".join(f"'{word}'" for word in counts.columns)
