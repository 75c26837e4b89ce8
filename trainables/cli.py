"""Command-line plumbing shared by the single-run command and the study launcher.

Every scalar field of `FinetuneConfig` becomes a `--flag` (`--batch-size 8`), with the help and
allowed values its declaration gives (`trainables.core.config.setting`); `--test NAME=PATH`
adds test sets, `--opt KEY=VALUE` optimizer hyperparameters, and `--config FILE` (TOML or YAML)
supplies any field. Precedence: defaults < file < flags. Errors the user can fix become one line
on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable

import tomllib
import yaml

from trainables.core.config import FinetuneConfig, choices_of, unknown_key_hint, unknown_keys
from trainables.errors import ConfigError, OptistudyError

PATH_KEYS = ("train_file", "valid_file", "e0s_file", "replay_file")  # data files, besides test_files
# flags of their own (--test, --profile-test, --opt), or tables that only --config gives
_SPECIAL = {"test_files", "optimizer_kwargs", "profile_tests", "optimizer_hyper", "method_settings"}
BOOLEAN_WORDS = {**dict.fromkeys(("1", "true", "yes", "on"), True), **dict.fromkeys(("0", "false", "no", "off"), False)}


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line `error: ...` and exit status 2, like every other error."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def _parse_scalar(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_bool(text: str) -> bool:
    """A command-line boolean: 1, true, yes or on (any case) is True; 0, false, no or off False."""
    try:
        return BOOLEAN_WORDS[str(text).lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None


def _field_type(field: dataclasses.Field) -> Callable[[str], Any]:
    hint = typing.get_type_hints(FinetuneConfig)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else hint
    if base is bool:
        return parse_bool
    if base in (int, float):
        return lambda text, base=base: None if text.lower() == "none" else base(text)
    return lambda text: None if text.lower() == "none" else text


def _field_values(field: dataclasses.Field) -> dict[str, Any]:
    """How a flag reads its value, and what its help shows: the field's choices (checked with the rest
    of the config, whose messages name the known values), true or false, or its type."""
    parse, choices = _field_type(field), choices_of(field)
    shown = "{true,false}" if parse is parse_bool else "{" + ",".join(choices) + "}" if choices else field.name.upper()
    return {"type": parse, "metavar": shown}


def _field_help(field: dataclasses.Field) -> str:
    default = "" if field.default in (None, dataclasses.MISSING) else f" (default: {str(field.default).lower()})"
    return field.metadata["help"] + default


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run configuration (any FinetuneConfig field)")
    group.add_argument("--config", type=Path, help="TOML or YAML file with config fields")
    for field in dataclasses.fields(FinetuneConfig):
        if field.name not in _SPECIAL:
            group.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, default=argparse.SUPPRESS,
                               help=_field_help(field), **_field_values(field))
    group.add_argument("--test", dest="test_files", action="append", default=argparse.SUPPRESS,
                       metavar="NAME=PATH", help="a named test set (repeatable)")
    group.add_argument("--profile-test", dest="profile_tests", action="append", default=argparse.SUPPRESS,
                       metavar="NAME", help="a test set that is a path or scan, also scored on relative energies "
                       "(repeatable)")
    group.add_argument("--opt", dest="optimizer_kwargs", action="append", default=argparse.SUPPRESS,
                       metavar="KEY=VALUE", help="an optimizer hyperparameter (repeatable); per optimizer: "
                       "[optimizer_hyper.NAME] in --config")


def _pairs(items: list[str], what: str) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} must look like KEY=VALUE, got {item!r}")
        out[key] = _parse_scalar(value) if what == "--opt" else value
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """Config fields from a TOML (.toml) or YAML (.yaml/.yml) file; its relative data paths are
    relative to the file, and an unknown key names the file and the closest known key."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = tomllib.loads(path.read_text()) if path.suffix == ".toml" else yaml.safe_load(path.read_text()) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot parse {path}: {err}".splitlines()[0]) from None
    unknown = unknown_keys(FinetuneConfig, values)
    if unknown:
        raise ConfigError(f"{path}: unknown config key {unknown_key_hint(FinetuneConfig, unknown)}")
    return paths_relative_to(values, path.parent)


def paths_relative_to(values: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`values` with each relative data path (PATH_KEYS, every test file, and a foundation given as a
    path rather than a mace_mp name or embedded system) taken relative to `folder`."""
    def resolved(path: str) -> str:
        return str(folder / path) if not Path(path).is_absolute() else path

    out = {key: resolved(value) if key in PATH_KEYS and isinstance(value, str) else value for key, value in values.items()}
    if isinstance(out.get("test_files"), dict):
        out["test_files"] = {name: resolved(str(p)) for name, p in out["test_files"].items()}
    foundation = out.get("foundation")
    if isinstance(foundation, str) and not foundation.startswith("embedded") and ("/" in foundation
                                                                                 or Path(foundation).suffix):
        out["foundation"] = resolved(foundation)
    return out


def config_values_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults < `--config` file < flags, as a plain dict (not yet validated)."""
    values = dict(vars(args))
    file = values.pop("config", None)
    merged = read_config_file(file) if file else {}
    if "test_files" in values:
        values["test_files"] = {**merged.get("test_files", {}), **_pairs(values["test_files"], "--test")}
    if "optimizer_kwargs" in values:
        values["optimizer_kwargs"] = {**merged.get("optimizer_kwargs", {}), **_pairs(values["optimizer_kwargs"], "--opt")}
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    return {**merged, **{k: v for k, v in values.items() if k in fields}}


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig.from_dict(config_values_from_args(args))


def command_parser(module: str, doc: str | None) -> OneLineParser:
    """The parser of `python -m module`, with the module's docstring `doc`, as written, for its help."""
    return OneLineParser(prog=f"python -m {module}", description=doc,
                         formatter_class=argparse.RawDescriptionHelpFormatter)


def run_command(parser: argparse.ArgumentParser, command: Callable[[argparse.Namespace], int],
                argv: list[str] | None = None) -> int:
    """Every command's `main`: `command(args)` on `argv` (default: the process's arguments) parsed by
    `parser`, under `run_cli`; returns the exit status."""
    return run_cli(lambda: command(parser.parse_args(argv)))


def run_cli(main: Callable[[], int]) -> int:
    """Run `main`; user errors become one line `error: ...` on stderr and exit code 2, Ctrl-C the line
    `interrupted` and exit code 130."""
    try:
        return main()
    except OptistudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def format_scores(scores: dict[str, dict[str, float]]) -> str:
    lines = [f"{'test set':<12} {'E RMSE (meV/atom)':>18} {'F RMSE (meV/A)':>15}"]
    lines += [f"{name:<12} {s['energy_rmse_mev_atom']:>18.2f} {s['force_rmse_mev_a']:>15.1f}" for name, s in scores.items()]
    return "\n".join(lines)
