"""`--optimizer`, `--lr` and `--seed` on study.launch narrow the space's grid, or are refused."""

import subprocess
import sys
from pathlib import Path

import pytest

from search_spaces import get_space
ROOT = Path(__file__).resolve().parents[2]
from study.launch import build_parser, narrow_space
from trainables.errors import ConfigError


def _narrowed(space: str, *flags: str):
    return narrow_space(get_space(space), build_parser().parse_args(["--space", space, *flags]))


def test_flags_narrow_the_grid_to_a_subset():
    space = _narrowed("lr_ablation", "--optimizer", "adamw", "--lr", "1e-3", "--seed", "2")
    assert (space.optimizers, space.lrs, space.seeds) == (("adamw",), (1e-3,), (2,))
    assert _narrowed("lr_ablation", "--lr", "0.005").optimizers == get_space("lr_ablation").optimizers


def test_without_flags_the_space_is_unchanged():
    assert _narrowed("lr_ablation") == get_space("lr_ablation")


@pytest.mark.parametrize("flags, message", [
    (["--lr", "2e-3"], r"--lr 0.002 is not in space 'lr_ablation' \(its lrs: 0.005, 0.001, 0.0005\)"),
    (["--optimizer", "sgd_momentum"], r"--optimizer sgd_momentum is not in space 'lr_ablation'"),
    (["--seed", "7"], r"--seed 7 is not in space 'lr_ablation' \(its seeds: 0, 1, 2\)"),
])
def test_a_value_outside_the_space_is_refused(flags, message):
    with pytest.raises(ConfigError, match=message):
        _narrowed("lr_ablation", *flags)


def test_an_lr_the_space_draws_itself_is_refused():
    with pytest.raises(ConfigError, match="space 'lr_search' sets the lr itself .*--lr does not apply"):
        _narrowed("lr_search", "--lr", "1e-3")
    assert list(_narrowed("lr_search", "--optimizer", "adam").lr_ranges) == ["adam"]


def test_the_command_says_so_in_one_line_and_exits_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "study.launch", "--space", "lr_ablation", "--lr", "2e-3",
                          "--storage", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "error: --lr 0.002 is not in space 'lr_ablation' (its lrs: 0.005, 0.001, 0.0005): the flags narrow the "
        "space's grid"]
    assert not any(tmp_path.iterdir())


def test_an_lr_set_per_method_or_per_optimizer_is_refused():
    with pytest.raises(ConfigError, match="space 'method_benchmark' sets the lr itself \\(its own per method\\)"):
        _narrowed("method_benchmark", "--lr", "1e-3")
    with pytest.raises(ConfigError, match="space 'protocol_ablation' sets the lr itself \\(one per optimizer\\)"):
        _narrowed("protocol_ablation", "--lr", "1e-3")
