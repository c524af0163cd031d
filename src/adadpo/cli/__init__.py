"""The ``adadpo`` command line. Sub-commands live in their own modules; this one only dispatches.

``adadpo`` with no sub-command runs ``explain``.
"""

from __future__ import annotations

import argparse
import sys

from adadpo import __version__
from adadpo.cli import demo, diagnose, explain, sweep, train

COMMANDS = {"explain": explain, "demo": demo, "train": train, "diagnose": diagnose, "sweep": sweep}

#: The extra that installs each optional dependency (``pip install "adadpo[extra]"``).
EXTRAS = {
    **dict.fromkeys(("trl", "transformers", "datasets", "accelerate", "yaml", "tqdm", "matplotlib"), "trainer"),
    "sklearn": "eval",
    "peft": "peft",
}


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """A one-line hint naming the extra to install, when ``err`` is an optional dependency's absence."""
    top = (err.name or "").split(".")[0]
    return f"{err} -- install the {EXTRAS[top]!r} extra: pip install \"adadpo[{EXTRAS[top]}]\"" if top in EXTRAS else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adadpo",
        description="Preference optimisation with gradient-balanced updates (AdaDPO).",
    )
    parser.add_argument("--version", action="version", version=f"adadpo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["explain", *argv]
    parser = build_parser()
    if getattr(COMMANDS.get(argv[0]), "RAW_ARGS", False):  # the command parses its own arguments
        args = argparse.Namespace(command=argv[0], args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except ValueError as err:  # a user's mistake: say what, no traceback
        parser.exit(2, f"adadpo {args.command}: error: {err}\n")
    except ModuleNotFoundError as err:  # an extra not installed: say which
        hint = missing_extra(err)
        if hint is None:
            raise
        parser.exit(2, f"adadpo {args.command}: error: {hint}\n")
