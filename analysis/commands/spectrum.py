"""`spectrum`: the curvature behind the ranking: kappa(H), kappa(PH) and alpha per
optimizer with their seed spread, the spectral densities of H and PH, and how kappa(PH) ranks
with the test-set errors."""

from __future__ import annotations

import argparse

import pandas as pd

from analysis.commands.base import METRIC, STUDIES, Command, Output, argument, filters
from analysis.commands.output import chart_files, load_rows, sections, table_files
from analysis.spectrum import (at_floor, density_chart, formatted, kappa_alpha_table, kappa_error_correlation,
                               per_model, spectrum_rows)


def correlations(models: pd.DataFrame, scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Spearman's rho of kappa(PH) with `metric`, one row per test set where it varies (not the
    foundation's own scores, `val_before`, the same for every model)."""
    test_sets = [t for t in dict.fromkeys(scores["test_set"]) if scores.loc[scores["test_set"] == t, metric].nunique() > 1]
    return pd.DataFrame([{"test_set": t, **kappa_error_correlation(models, scores, test_set=t, metric=metric)}
                         for t in test_sets])


def run(args: argparse.Namespace) -> Output:
    rows = spectrum_rows(load_rows(args, "properties", skip=("test_set",)))
    models = per_model(rows) if args.relative_floor is None else at_floor(rows, args.relative_floor, args.quantile)
    table = formatted(kappa_alpha_table(models))
    agreement = correlations(models, load_rows(args, "scores"), args.metric)
    floor = "the evaluator's" if args.relative_floor is None else f"{args.relative_floor:g} x lambda_max, quantile {args.quantile:g}"
    note = (f"kappa = lambda_max / lambda_low over the positive part (lambda_low: a lower quantile of the SLQ mass above "
            f"a floor, here {floor}; docs/curvature.md); alpha = 1 - log kappa(PH) / log kappa(H). Spearman's rho over models (each "
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
    (*STUDIES, *filters(None), METRIC,
     argument("--relative-floor", type=float, help="recompute kappa and alpha from the stored SLQ quadratures with this "
              "floor (a fraction of lambda_max; default: the evaluator's kappas)"),
     argument("--quantile", type=float, default=0.1, help="with --relative-floor: lambda_low's quantile (default: "
              "%(default)s)")),
    run,
    examples=("results/curvature --out figures/",),
)
