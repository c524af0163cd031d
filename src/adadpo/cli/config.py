"""``adadpo train``'s configuration: a YAML file plus command-line overrides, parsed by TRL's own ``TrlParser``.

``--config run.yaml`` sets the defaults (its ``env:`` section the environment), ``--key value`` overrides them,
and keys that ``accelerate launch`` takes (``num_processes``, ``accelerate_config``, ...) are launch settings:
all exactly as ``trl dpo --config``, so a config TRL accepts is accepted here. adadpo adds only what TRL lacks:
every other unknown key is a one-line error naming the closest known ones, and so is a list or a mapping given
to a field whose type takes neither (TRL would pass it on to fail deep inside training).
"""

from __future__ import annotations

import difflib
import json
import os
import types
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml
from trl import TrlParser


def _suggest(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _admits(tp: Any, kind: type) -> bool:
    """Whether a field annotated ``tp`` takes a ``list`` or ``dict`` (``kind``) value."""
    if get_origin(tp) in (Union, types.UnionType):
        return any(_admits(arg, kind) for arg in get_args(tp))
    return tp is Any or tp is kind or get_origin(tp) is kind


class _Parser(TrlParser):
    """``TrlParser`` raising ``ValueError`` (one line) instead of printing usage and exiting, and checking that a
    YAML list or mapping goes to a field that takes one."""

    config_path = "the config"

    def error(self, message: str) -> None:
        raise ValueError(message)

    def set_defaults_with_config(self, **config: Any) -> list[str]:
        hints = {name: hint for dc in self.dataclass_types for name, hint in get_type_hints(dc).items()
                 if name in {f.name for f in fields(dc)}}
        for key, value in config.items():
            for kind, what in ((list, "a list"), (dict, "a mapping")):
                if isinstance(value, kind) and key in hints and not _admits(hints[key], kind):
                    expected = getattr(hints[key], "__name__", str(hints[key]))
                    raise ValueError(f"{key}={value!r} in {self.config_path}: expected {expected}, not {what}")
        if "output_dir" in config and config["output_dir"] is None:
            raise ValueError(f"output_dir=None in {self.config_path}: expected a directory (leave the key out for "
                             "TRL's default, trainer_output)")
        from adadpo.cli.guard import check_no_variables, path_values

        check_no_variables(path_values(config))  # before transformers reads a path (deepspeed: $X/ds.json)
        self.config_keys = set(config)
        return super().set_defaults_with_config(**config)


@dataclass
class ParsedConfig:
    """``instances``: one per dataclass type; ``given``: the keys the user set (file or command line), so that a
    default can be told from a choice, and ``overridden`` those of them set on the command line; ``launch_args``:
    ``accelerate launch`` arguments (empty: no launch); ``script_argv``: the command line without its launch
    arguments (what the launched processes get)."""

    instances: tuple[Any, ...]
    given: set[str]
    launch_args: list[str]
    script_argv: list[str]
    overridden: set[str] = field(default_factory=set)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (PyYAML keeps the last without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ValueError(f"key {key!r} is given twice (lines {seen[key]} and {key_node.start_mark.line + 1}); "
                                 "the last would silently win: keep one")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def check_unique_keys(path: str) -> None:
    """``ValueError`` naming the file, the key and both lines when a mapping of the YAML file ``path`` repeats a
    key (YAML syntax errors are left to the parser that reads the file)."""
    try:
        with open(path, encoding="utf-8") as f:
            yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader subclass
    except ValueError as err:
        raise ValueError(f"--config {path}: {err}") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        return


def _config_option(argv: list[str]) -> list[str]:
    """``argv`` with ``--config`` in each spelling argparse users write (``--config=FILE``, ``-c FILE``, ``-c=FILE``)
    as ``--config FILE``; ``--config`` given twice, or a YAML file given without it, is a ``ValueError``."""
    out: list[str] = []
    for token in argv:
        name, eq, value = token.partition("=")
        if name in ("--config", "-c"):
            out += ["--config", value] if eq else ["--config"]
        else:
            out.append(token)
    paths = [out[i + 1] for i, t in enumerate(out[:-1]) if t == "--config"]
    if len(paths) > 1:
        raise ValueError(f"--config is given {len(paths)} times ({', '.join(paths)}); give one file (merge them, "
                         "or override its keys with --key value)")
    if out and not out[0].startswith("-") and out[0].endswith((".yaml", ".yml", ".json")):
        raise ValueError(f"{out[0]!r} is not an option: did you forget --config? (adadpo train --config {out[0]})")
    return out


def _stray_values(remaining: list[str], argv: list[str], launch_options: set[str]) -> None:
    """``ValueError`` for a value on the command line that no option took (``--max_steps 2 3``, an unquoted path
    with a space): argparse leaves it among the remaining strings, and it would be ignored."""
    in_launch = False
    for token in remaining:
        if token.startswith("--"):
            in_launch = token.split("=", 1)[0] in launch_options
            continue
        if in_launch:
            continue
        index = max((i for i, t in enumerate(argv) if t == token), default=0)
        before = next((argv[i] for i in range(index - 1, -1, -1) if argv[i].startswith("-")), None)
        if before is None:
            raise ValueError(f"{token!r} is not an option (options start with --): did you forget --config?")
        shown = " ".join(argv[argv.index(before):index])
        raise ValueError(f"stray value {token!r} after {shown}: no option takes it (one value per option; a path "
                         "with a space must be quoted)")


def _launch_options() -> set[str]:
    from accelerate.commands.launch import launch_command_parser

    options = {opt for action in launch_command_parser()._actions for opt in action.option_strings}
    return options | {"--accelerate_config"}  # TRL's name for a predefined or custom accelerate config


def _split_remaining(remaining: list[str], known: Sequence[str], source: str | None) -> list[str]:
    """The ``accelerate launch`` arguments among the strings the dataclasses did not take (from the file
    ``source``, or the command line for ``None``); any other ``--key`` is an error naming the closest known keys."""
    launch_options = _launch_options()
    launch: list[str] = []
    unknown: list[str] = []
    in_launch = False
    for token in remaining:
        if token.startswith("--"):
            name = token.split("=", 1)[0]
            in_launch = name in launch_options
            if not in_launch:
                unknown.append(name[2:])
        if in_launch:
            launch.append(token)
    if unknown:
        name = (lambda k: f"unknown key {k!r} in {source}") if source else (lambda k: f"unknown option --{k}")
        raise ValueError("; ".join(name(k) + _suggest(k, known) for k in unknown)
                         + f". Run `adadpo train --help` for the {len(known)} known keys")
    return launch


def parse_config(dataclass_types: Sequence[type], argv: Sequence[str], prog: str) -> ParsedConfig:
    """Parse ``[--config FILE] [--key value ...]`` into instances of ``dataclass_types`` with TRL's parser."""
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    parser = _Parser(list(dataclass_types), prog=prog)
    argv = _config_option(list(argv))
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv) or not argv[i + 1] or argv[i + 1].startswith("--"):
            raise ValueError("--config needs a path to a YAML file")
        parser.config_path = argv[i + 1]
        if not os.path.isfile(parser.config_path):
            raise ValueError(f"--config {parser.config_path}: no such file")
        check_unique_keys(parser.config_path)
    try:
        *instances, from_file, from_argv = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
    except yaml.YAMLError as err:
        raise ValueError(f"--config {parser.config_path} is not valid YAML: {' '.join(str(err).split())}") from err
    except (TypeError, json.JSONDecodeError) as err:
        raise ValueError(str(err)) from err
    known = sorted({a.dest for a in parser._actions if a.dest != "help"})
    argv_launch = _split_remaining(from_argv, known, None)  # unknown options first: their values are strays too
    _stray_values(from_argv, argv, _launch_options())
    launch = _split_remaining(from_file, known, parser.config_path) + argv_launch
    script_argv, pending = [], iter(argv_launch)  # argv minus the launch tokens (an ordered subsequence of it)
    expected = next(pending, None)
    for token in argv:
        if token == expected:
            expected = next(pending, None)
        else:
            script_argv.append(token)
    dests = {a.dest for a in parser._actions}
    overridden: set[str] = set()
    for token in argv:
        name = token[2:].split("=", 1)[0].replace("-", "_") if token.startswith("--") else ""
        overridden |= {name, name.removeprefix("no_")} & dests
    given = set(getattr(parser, "config_keys", ())) & dests | overridden
    return ParsedConfig(tuple(instances), given, resolve_accelerate_config_argument(launch), script_argv, overridden)
