"""Shared fixtures: the embedded smoke system (real xTB or EMT labels, a real pretrained MACE
foundation of ~30k parameters) built once per test session in a temporary cache."""

import os

import pytest

import trainables  # noqa: F401  (imports mace before e3nn)


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("optistudy-cache")
    os.environ["OPTISTUDY_CACHE"] = str(root)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return root


@pytest.fixture(scope="session")
def smoke_config(cache_root):
    from trainables.config import FinetuneConfig

    return FinetuneConfig(data_size="smoke", epochs=2, batch_size=4, threads=1, compile=False)


@pytest.fixture(scope="session")
def smoke_inputs(smoke_config):
    from trainables.inputs import prepare_inputs

    return prepare_inputs(smoke_config)


@pytest.fixture(scope="session")
def smoke_files(smoke_inputs):
    """The smoke system's file paths (train, tests, e0s, foundation)."""
    return smoke_inputs.sources
