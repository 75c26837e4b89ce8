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
    assert get_space("protocol_ablation").num_first_order_trials == 63  # 7 optimizers x 3 protocols x 3 seeds


def test_protocol_ablation_runs_each_optimizer_at_one_lr_under_protocols_the_config_accepts():
    from trainables.core.config import FinetuneConfig

    space = get_space("protocol_ablation")
    assert set(space.lr_by_optimizer) == set(space.optimizers) and not space.lrs
    assert set(space.protocols) == {"constant", "cosine", "ema"}
    for optimizer in space.optimizers:
        for overlay in space.protocols.values():
            FinetuneConfig.from_dict({**space.fixed, **overlay, "optimizer": optimizer,
                                      "lr": space.lr_by_optimizer[optimizer]})


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
    ("optimizers = ['adam']\nlrs = [1e-3]\n[fixed]\nepochz = 3\n", "unknown config key 'epochz' \\(did you mean 'epochs'\\?\\)"),
    ("optimizers = ['adam']\nlrs = [1e-3]\nstages = ['first_order', 'lbfgs']\n[lbfgs]\nc1 = 0.95\n", "c1"),
    ("optimizers = ['adam']\nlrs = [1e-3]\nstages = ['first_order', 'lbfgs']\n[lbfgs]\nchunk_size = 0\n",
     "chunk_size must be an integer >= 1"),
    ("optimizers = ['adam']\nlrs = [1e-3]\nstages = ['first_order', 'lbfgs']\n[lbfgs]\ndamping = 'always'\n",
     "damping must be one of"),
    ("optimizers = ['adam']\nlrs = [1e-3]\n[hyper.lamb]\neps = 1e-6\n", r"\[hyper\] names optimizer\(s\) \['lamb'\]"),
    ("optimizers = ['adam']\nlrs = [1e-3]\nhyper = 3\n", r"\[hyper\] must hold one table per optimizer"),
    ("optimizers = ['adam']\nlrs = [1e-3]\n[protocols.ema]\nema_decy = 0.9\n",
     r"in \[protocols.ema\], unknown config key 'ema_decy' \(did you mean 'ema_decay'\?\)"),
    ("optimizers = ['adam']\nlrs = [1e-3]\n[protocols.fast]\nlr = 0.1\n",
     r"\[protocols.fast\] sets \['lr'\], which the grid sets"),
    ("optimizers = ['adam']\nlrs = [1e-3]\nprotocols = 3\n", r"\[protocols\] must be a table"),
    ("optimizers = ['adam']\nlrs = [1e-3]\n[protocols]\nema = 0.9\n", r"\[protocols\] must hold one table per protocol"),
    ("search = 'optuna'\n[lr_ranges]\nadam = [1e-4, 1e-2]\n[protocols.ema]\nema_decay = 0.9\n",
     r"\[protocols\] needs search = 'grid'"),
    ("optimizers = ['adam', 'sgd']\n[lr_by_optimizer]\nadam = 1e-3\n",
     r"\[lr_by_optimizer\] must name each of the optimizers \['adam', 'sgd'\] once, got \['adam'\]"),
    ("optimizers = ['adam']\nlrs = [1e-3]\n[lr_by_optimizer]\nadam = 1e-3\n", r"give lrs or \[lr_by_optimizer\], not both"),
    ("optimizers = ['adam']\n[lr_by_optimizer]\nadam = -1e-3\n", "lrs must be positive"),
])
def test_bad_space_files(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        get_space(str(path))


def test_unknown_space_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown search space 'tables'; known: curvature, lbfgs_refinement"):
        get_space("tables")


def test_fixed_values_are_checked_once_merged_not_alone(tmp_path):
    """A space may fix mode = "replay" and leave replay_samples to the user's config."""
    path = tmp_path / "replay.toml"
    path.write_text("optimizers = ['adam']\nlrs = [1e-3]\n[fixed]\nmode = 'replay'\n")
    assert get_space(str(path)).fixed == {"mode": "replay"}


def test_per_optimizer_hyper_parameters_reach_each_trials_config(tmp_path):
    """[hyper.NAME] tables become the config's optimizer_hyper; each trial's optimizer takes its own."""
    from trainables.core.config import FinetuneConfig

    path = tmp_path / "tuned.toml"
    path.write_text("optimizers = ['ranger', 'sgd_momentum']\nlrs = [1e-3]\n[hyper.ranger]\nk = 5\nalpha = 0.8\n"
                    "[hyper.sgd_momentum]\nmomentum = 0.5\nnesterov = true\n")
    space = get_space(str(path))
    assert space.hyper == {"ranger": {"k": 5, "alpha": 0.8}, "sgd_momentum": {"momentum": 0.5, "nesterov": True}}
    config = FinetuneConfig.from_dict({**space.fixed, "optimizer": "sgd_momentum"})
    assert config.hyper == {"momentum": 0.5, "nesterov": True}


def test_a_space_with_an_unknown_hyper_parameter_fails_once_merged(tmp_path):
    from trainables.core.config import FinetuneConfig

    path = tmp_path / "typo.toml"
    path.write_text("optimizers = ['ranger']\nlrs = [1e-3]\n[hyper.ranger]\nlookahead_k = 5\n")
    with pytest.raises(ConfigError, match=r"optimizer 'ranger': unknown hyper-parameter\(s\) \['lookahead_k'\]"):
        FinetuneConfig.from_dict({**get_space(str(path)).fixed, "optimizer": "ranger"})


def test_the_lbfgs_table_has_one_schema_for_space_and_stage():
    from trainables.core.config import split_options

    lbfgs, chunk = split_options({"max_steps": 3, "chunk_size": 8, "damping": "paper"})
    assert (lbfgs.max_steps, lbfgs.damping, chunk) == (3, "paper", 8)
