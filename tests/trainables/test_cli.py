"""The run-configuration flags that every command shares: each says what it sets and, where the
values are a closed set, which ones; a bad value is one line and exit status 2."""

import dataclasses

import pytest

from trainables.cli import OneLineParser, add_config_arguments, config_from_args
from trainables.core.config import FinetuneConfig, choices_of
from trainables.errors import ConfigError


@pytest.fixture
def parser():
    parser = OneLineParser(prog="test")
    add_config_arguments(parser)
    return parser


def flag_help(parser, name: str) -> tuple[str, str]:
    """(metavar, help) of the flag setting config field `name`."""
    action = next(a for a in parser._actions if a.dest == name)
    return action.metavar, action.help


def test_every_flag_has_help_and_shows_its_allowed_values(parser):
    flags = {a.dest for a in parser._actions}
    for field in dataclasses.fields(FinetuneConfig):
        if field.name in flags:
            metavar, help_text = flag_help(parser, field.name)
            assert help_text, field.name
            if choices_of(field):
                assert metavar == "{" + ",".join(choices_of(field)) + "}"
    assert flag_help(parser, "dtype") == ("{float32,float64}", "training precision (default: float32)")
    assert flag_help(parser, "compile")[0] == "{true,false}"
    assert "adamw" in flag_help(parser, "optimizer")[0] and "lora+replay" in flag_help(parser, "method")[0]


def test_a_value_outside_the_choices_is_refused_by_the_config(parser):
    with pytest.raises(ConfigError, match=r"schedule must be one of \('constant', 'cosine', 'plateau'\), got 'linear'"):
        config_from_args(parser.parse_args(["--schedule", "linear"]))
    with pytest.raises(ConfigError, match="unknown optimizer 'adamax'; known: sgd"):
        config_from_args(parser.parse_args(["--optimizer", "adamax"]))


def test_a_boolean_flag_takes_true_or_false_only(parser, capsys):
    assert config_from_args(parser.parse_args(["--compile", "off"])).compile is False
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--compile", "flase"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: argument --compile: expected true or false, got 'flase' (see --help)\n"


def test_tables_come_from_the_config_file_only(parser):
    assert not any(a.dest in ("method_settings", "optimizer_hyper") for a in parser._actions)
