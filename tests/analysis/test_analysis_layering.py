"""The analysis layer reads Parquet and knows nothing of Ray or torch (imports point one way)."""

import subprocess
import sys
from pathlib import Path

import analysis

REPO = Path(__file__).resolve().parents[2]


def test_importing_analysis_loads_neither_ray_nor_torch():
    probe = ("import sys, analysis, analysis.cli; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'torch', 'trainables', 'study'}))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


def test_public_names_are_exported():
    assert all(hasattr(analysis, name) for name in analysis.__all__)
