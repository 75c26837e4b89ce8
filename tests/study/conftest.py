import pytest

from launching import launch_command, run_launch


@pytest.fixture(scope="session")
def launch():
    """Run `python -m study.launch` (default: the smoke space) in a subprocess and wait for it."""
    return run_launch


@pytest.fixture(scope="session")
def launch_args():
    """The argument list of a `python -m study.launch` call, to start it yourself."""
    return launch_command


@pytest.fixture(scope="session")
def smoke_study(cache_root, smoke_inputs, tmp_path_factory):
    """The smoke space run once end to end through the CLI; returns its study folder."""
    storage = tmp_path_factory.mktemp("studies")
    done = run_launch(storage)
    assert done.returncode == 0, done.stderr[-3000:]
    return storage / "smoke", done.stdout
