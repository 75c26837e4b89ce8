"""Shared fixtures: the embedded smoke system (real xTB or EMT labels, a real pretrained MACE
foundation of ~30k parameters) built once per test session in a temporary cache."""

import os
from pathlib import Path

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
    from trainables.core.config import FinetuneConfig

    return FinetuneConfig(data_size="smoke", epochs=2, batch_size=4, threads=1, compile=False)


@pytest.fixture(scope="session")
def smoke_inputs(smoke_config):
    from trainables.stages.inputs import prepare_inputs

    return prepare_inputs(smoke_config)


@pytest.fixture(scope="session")
def smoke_files(smoke_inputs):
    """The smoke system's file paths (train, tests, e0s, foundation)."""
    return smoke_inputs.sources


# The suite runs on two pytest-xdist workers (pyproject's addopts), a test file at a time on one
# worker. The files below compile the training step with torch.compile, or check that a process
# adds nothing to inductor's on-disk cache: one worker runs them all, in this order, so that each
# graph is compiled once and loaded by the tests after, and no other worker's compilation changes
# the cache under a test (the other tests run with compile = false). They are the longest share of
# the suite, so they start first. test_warm_up.py compiles too but runs on either worker, as it has
# in every passing suite since its rename: this chain is the suite's longest.
COMPILER_FILES = ["test_compile_lock.py", "test_compiled.py", "test_fused_conv.py", "test_refine.py",
                  "test_replay.py"]


def work_unit(nodeid: str) -> str:
    """What one xdist worker runs in one go: "compiler" for COMPILER_FILES' tests, else the test's file."""
    path = nodeid.split("::", 1)[0]
    return "compiler" if Path(path).name in COMPILER_FILES else path


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: work_unit(item.nodeid) != "compiler")  # stable: file order kept


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)
