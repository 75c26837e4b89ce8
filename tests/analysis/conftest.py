"""Fixtures: the synthetic study of synthetic_study.py, written once per session."""

from pathlib import Path

import pytest
from synthetic_study import write_study


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> Path:
    return write_study(tmp_path_factory.mktemp("storage"))
