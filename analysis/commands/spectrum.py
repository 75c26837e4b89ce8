"""`spectrum`: the curvature behind the ranking (issue 43): kappa(H), kappa(PH) and alpha per
optimizer with their seed spread, the spectral densities of H and PH, and how kappa(PH) ranks
with the test-set errors."""

from __future__ import annotations

import argparse

import pandas as pd

from analysis.commands.base import METRIC, STUDIES, Command, Output, filters
from analysis.commands.output import chart_files, load_rows, sections, table_files
from analysis.spectrum import density_chart, formatted, kappa_alpha_table, kappa_error_correlation, spectrum_rows


def correlations(rows: pd.DataFrame, scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Spearman's rho of kappa(PH) with `metric`, one row per test set that has it."""
    test_sets = [t for t in dict.fromkeys(scores["test_set"]) if scores.loc[scores["test_set"] == t, metric].notna().any()]
    return pd.DataFrame([{"test_set": t, **kappa_error_correlation(rows, scores, test_set=t, metric=metric)}
                         for t in test_sets])


def run(args: argparse.Namespace) -> Output:
    rows = spectrum_rows(load_rows(args, "properties", skip=("test_set",)))
    table = formatted(kappa_alpha_table(rows))
    agreement = correlations(rows, load_rows(args, "scores"), args.metric)
    note = ("kappa = lambda_max / lambda_low over the positive part (lambda_low: a lower quantile of the SLQ mass above "
            "a floor; docs/curvature.md); alpha = 1 - log kappa(PH) / log kappa(H). Spearman's rho over models (each "
            "seed and stage a point); with a few seeds per optimizer a p-value above 0.05 says no more than 'not "
            "shown', and points of one optimizer are not independent.")
    parts = [("kappa and alpha per optimizer, mean (std) over seeds", table),
             (f"Spearman's rho of kappa(PH) with {args.metric}", agreement)]
    files = {**table_files("spectrum", table), **table_files("spectrum_correlation", agreement),
             **chart_files("spectral_density", density_chart(rows))}
    return Output(sections(args.format, parts, note), files)


COMMAND = Command(
    "spectrum", "curvature per optimizer (a spectrum evaluation): kappa(H), kappa(PH), alpha, spectral densities, "
                "kappa(PH) against the test errors",
    (*STUDIES, *filters(None), METRIC),
    run,
    examples=("results/curvature --out figures/",),
)
