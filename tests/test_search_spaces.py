"""Named search spaces are data; user files use the same format."""

import pytest

from search_spaces import get_space, known_spaces
from trainables.errors import ConfigError


def test_the_papers_spaces_are_registered():
    assert {"optimizer_benchmark", "lr_ablation", "lbfgs_refinement", "lr_search", "smoke"} <= set(known_spaces())
    assert get_space("lr_ablation").num_first_order_trials == 63
    assert get_space("optimizer_benchmark").num_first_order_trials == 21
    assert get_space("lbfgs_refinement").has_lbfgs
    assert get_space("lr_search").search == "optuna"


def test_user_space_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("optimizers: [adam, lamb]\nlrs: [0.002]\nseeds: [7]\nfixed: {epochs: 3}\n")
    space = get_space(str(path))
    assert space.name == "mine" and space.optimizers == ("adam", "lamb") and space.fixed == {"epochs": 3}


@pytest.mark.parametrize("text, message", [
    ("optimizers = ['adam']\nlrs = [-1.0]\n", "lrs must be positive"),
    ("optimizers = ['adamax']\nlrs = [1e-3]\n", "unknown optimizer 'adamax'"),
    ("optimizers = ['adam']\nlrs = [1e-3]\nbudget = 3\n", "unknown key\\(s\\) \\['budget'\\]"),
    ("optimizers = ['adam'\n", "malformed space file"),
    ("optimizers = ['adam']\nlrs = [1e-3]\n[fixed]\nepochz = 3\n", "unknown config key\\(s\\) \\['epochz'\\]"),
    ("optimizers = ['adam']\nlrs = [1e-3]\nstages = ['first_order', 'lbfgs']\n[lbfgs]\nc1 = 0.95\n", "c1"),
])
def test_bad_space_files(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        get_space(str(path))


def test_unknown_space_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown search space 'tables'; known: lbfgs_refinement"):
        get_space("tables")


def test_fixed_values_are_checked_once_merged_not_alone(tmp_path):
    """A space may fix mode = "replay" and leave replay_samples to the user's config."""
    path = tmp_path / "replay.toml"
    path.write_text("optimizers = ['adam']\nlrs = [1e-3]\n[fixed]\nmode = 'replay'\n")
    assert get_space(str(path)).fixed == {"mode": "replay"}
