"""YAML config plus command-line overrides for dataclass-backed commands (``adadpo train``).

Follows ``trl``'s ``TrlParser`` convention (``--config run.yaml``, then ``--key value`` overrides, an optional
``env:`` mapping), with two differences: YAML values go through the same type conversion as the command
line, so a mistyped value fails at once naming the key, and unknown keys fail with the closest known names.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
from collections.abc import Sequence
from typing import Any

import yaml
from trl import TrlParser


def _suggest(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _type_name(action: argparse.Action) -> str:
    return getattr(action.type, "__name__", str(action.type)) if action.type else "str"


def _config_tokens(parser: TrlParser, config: dict[str, Any], source: str) -> list[str]:
    """Turn a YAML mapping into command-line tokens, checking keys, types and choices on the way."""
    actions: dict[str, argparse.Action] = {}
    for a in parser._actions:  # the first action of a dest is --key; a later --no_key shares the dest
        if a.dest != "help":
            actions.setdefault(a.dest, a)
    unknown = [k for k in config if k not in actions]
    if unknown:
        raise ValueError(
            "; ".join(f"unknown key {k!r} in {source}{_suggest(k, list(actions))}" for k in unknown)
            + f". Run `adadpo train --help` for the {len(actions)} known keys"
        )
    tokens: list[str] = []
    for key, value in config.items():
        action = actions[key]
        if value is None or isinstance(value, dict):
            parser.set_defaults(**{key: value})  # argparse has no syntax for null or a mapping
            continue
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and action.nargs not in ("+", "*"):
            raise ValueError(f"{key}={value!r} in {source}: expected a single {_type_name(action)}, got a list")
        for v in values:
            text = str(v).lower() if isinstance(v, bool) else str(v)
            if action.type is not None:
                try:
                    action.type(text)
                except (TypeError, ValueError) as err:
                    raise ValueError(f"{key}={v!r} in {source}: expected {_type_name(action)} ({err})") from err
            if action.choices is not None and action.type is not None and action.type(text) not in action.choices:
                raise ValueError(f"{key}={v!r} in {source}: expected one of {list(action.choices)}")
        tokens += [action.option_strings[0], *(str(v).lower() if isinstance(v, bool) else str(v) for v in values)]
    return tokens


class _Parser(TrlParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit; raise a ValueError instead
        raise ValueError(message)


def parse_config(dataclass_types: Sequence[type], argv: Sequence[str], prog: str) -> tuple[Any, ...]:
    """Parse ``[--config FILE] [--key value ...]`` into instances of ``dataclass_types``.

    Returns the dataclass instances followed by the set of keys the user gave (in the file or on the
    command line), so callers can tell a default from an explicit choice.
    """
    parser = _Parser(list(dataclass_types), prog=prog)
    argv = list(argv)
    tokens: list[str] = []
    given: set[str] = set()
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ValueError("--config needs a path to a YAML file")
        path = argv[i + 1]
        del argv[i : i + 2]
        if not os.path.isfile(path):
            raise ValueError(f"--config {path}: no such file")
        with open(path, encoding="utf-8") as f:
            try:
                config = yaml.safe_load(f) or {}
            except yaml.YAMLError as err:
                raise ValueError(f"--config {path} is not valid YAML: {err}") from err
        if not isinstance(config, dict):
            raise ValueError(f"--config {path} must hold a YAML mapping of key: value, got {type(config).__name__}")
        env = config.pop("env", {}) or {}
        if not isinstance(env, dict):
            raise ValueError(f"env in {path} must be a mapping of environment variables")
        for key, value in env.items():
            os.environ[str(key)] = str(value)
        tokens = _config_tokens(parser, config, path)
        given |= set(config)
    known = {opt for a in parser._actions for opt in a.option_strings}
    for tok in argv:
        if tok.startswith("--"):
            name = tok[2:].split("=", 1)[0]
            if f"--{name}" not in known:
                raise ValueError(f"unknown option --{name}{_suggest(name, [o[2:] for o in known])}")
            given.add(name[3:] if name.startswith("no_") and f"--{name[3:]}" in known else name)
    try:
        out = parser.parse_args_into_dataclasses(args=tokens + argv, return_remaining_strings=True)
    except ValueError:
        raise
    except (TypeError, json.JSONDecodeError) as err:
        raise ValueError(str(err)) from err
    *instances, remaining = out
    if remaining:
        raise ValueError(f"unexpected arguments: {' '.join(remaining)}")
    return (*instances, given)
