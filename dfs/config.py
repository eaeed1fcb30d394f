"""Command-line flags that can also come from a TOML file (`--config FILE.toml`).

A key in the file is the flag's long name without dashes (`data-dir` or
`data_dir`); a flag given on the command line wins over the file.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A config file that cannot be read or names unknown keys."""


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config {path} is not valid TOML: {err}") from err


def _flag_dests(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}


def apply_config(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]
) -> argparse.Namespace:
    """Fill flags not given on the command line from `args.config`, if set."""
    config_path = getattr(args, "config", None)
    if not config_path:
        return args
    actions = _flag_dests(parser)
    given = {
        action.dest
        for action in actions.values()
        for token in argv
        if token in action.option_strings or token.split("=", 1)[0] in action.option_strings
    }
    for key, value in load_toml(Path(config_path)).items():
        dest = key.replace("-", "_")
        action = actions.get(dest)
        if action is None or dest == "config":
            raise ConfigError(f"config {config_path}: unknown key {key!r}")
        if dest in given:
            continue
        convert = action.type
        if callable(convert) and not isinstance(value, bool | list):
            try:
                value = convert(value)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"config {config_path}: bad value for {key!r}: {err}") from err
        setattr(args, dest, value)
    return args


def require(args: argparse.Namespace, *dests: str) -> None:
    """Flags that must be set, from the command line or the config file."""
    missing = [d for d in dests if getattr(args, d, None) in (None, "")]
    if missing:
        names = ", ".join("--" + d.replace("_", "-") for d in missing)
        raise ConfigError(f"missing {names} (give it as a flag or in --config)")
