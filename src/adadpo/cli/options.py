"""One spelling of every option across the sub-commands: TRL's underscore names (``--model_name_or_path``,
``--dataset_name``, ``--max_length``, ``--output_dir``, ``--balance_clip``, ...), as ``adadpo train`` takes them.

Dashes for underscores (``--output-dir``) are accepted everywhere without a word, as TRL's own parser accepts
them; the names of earlier releases (``--model``, ``--kappa``, ``--clip``, ...) are accepted for this release
with a note on stderr naming the new one. Neither appears in ``--help``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence

_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]+\.)?([^`]+)`")  # :class:`~adadpo.trl.AdaDPOConfig` -> AdaDPOConfig
_LINK = re.compile(r"\[`~?(?:[\w.]+\.)?([^`\]]+)`\]")  # [`~transformers.Trainer`] (TRL/transformers docs)
_CODE = re.compile(r"``([^`]+)``|`([^`]+)`")


def plain_text(text: str | None) -> str | None:
    """``text`` (a docstring or a dataclass field's help) without reST/markdown markup, as ``--help`` prints it:
    ````code```` and ```code``` as code, ``:class:`~a.B``` and ``[`~a.B`]`` as ``B``."""
    if not text:
        return text
    text = _LINK.sub(r"\1", _ROLE.sub(r"\1", text))
    return _CODE.sub(lambda m: m.group(1) or m.group(2), text)


def plain_help(parser: argparse.ArgumentParser) -> None:
    """Strip the markup (:func:`plain_text`) from ``parser``'s description and every option's help."""
    parser.description = plain_text(parser.description)
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = plain_text(action.help)


def accept_dashes(parser: argparse.ArgumentParser) -> None:
    """Let every ``--some_option`` also be spelt ``--some-option``, without listing it in the help."""
    for option, action in list(parser._option_string_actions.items()):
        alias = "--" + option[2:].replace("_", "-")
        if option.startswith("--") and alias != option:
            parser._option_string_actions.setdefault(alias, action)


def _bool(text: str) -> bool:
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def add_bool_argument(parser: argparse.ArgumentParser, flag: str, *, default: bool | None, help: str) -> None:
    """``--flag`` / ``--flag true|false`` / ``--no_flag``, as TRL's parser (``adadpo train``) takes a boolean."""
    dest = flag[2:]
    parser.add_argument(flag, type=_bool, nargs="?", const=True, default=default, metavar="true|false", help=help)
    parser.add_argument(f"--no_{dest}", dest=dest, action="store_const", const=False, help=argparse.SUPPRESS)


def _underscored(name: str) -> str:
    return "--" + name[2:].replace("-", "_")


def rename_old_options(argv: Sequence[str], renamed: Mapping[str, str], prog: str) -> list[str]:
    """``argv`` with each old option name of ``renamed`` (``{"--kappa": "--balance_clip"}``, written with
    underscores; a boolean's ``--no_`` form follows its name) replaced by the new one, and one note per old name
    used on stderr. ``--old=value`` keeps its value; everything after ``--`` is left alone."""
    table = dict(renamed)
    for old, new in renamed.items():
        table.setdefault("--no_" + old[2:], "--no_" + new[2:])
    out: list[str] = []
    noted: set[str] = set()
    for i, token in enumerate(argv):
        if token == "--":
            return out + list(argv[i:])
        name, eq, value = token.partition("=")
        new = table.get(_underscored(name)) if name.startswith("--") else None
        if new is None:
            out.append(token)
            continue
        if name not in noted:
            noted.add(name)
            print(f"{prog}: note: {name} is now {new} (the old name works for this release)", file=sys.stderr)
        out.append(new + eq + value)
    return out
