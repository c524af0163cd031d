"""The ``adadpo`` command line. Sub-commands live in their own modules; this one only dispatches.

``adadpo`` with no sub-command runs ``explain``.
"""

from __future__ import annotations

import argparse
import sys

from adadpo import __version__
from adadpo.cli import demo, diagnose, explain, lc, sweep, train
from adadpo.cli.options import accept_dashes, plain_help, plain_text, rename_old_options

COMMANDS = {"explain": explain, "demo": demo, "train": train, "diagnose": diagnose, "sweep": sweep, "lc": lc}

#: The extra that installs each optional dependency (``pip install "adadpo[extra]"``).
EXTRAS = {
    **dict.fromkeys(("trl", "transformers", "datasets", "accelerate", "yaml", "tqdm", "matplotlib"), "trainer"),
    "sklearn": "eval",
    "gguf": "bench",
    "peft": "peft",
    "tensorboard": "tensorboard",
    "liger_kernel": "liger",
    "flash_attn": "flash",
    "bitsandbytes": "quant",
}
#: The extras each extra brings with it (pyproject.toml): a command's own extra covers these.
INCLUDES = {"bench": ("bench", "trainer", "eval"), "test": ("test", "trainer", "eval", "bench", "peft")}


def missing_extra(err: ModuleNotFoundError, command_extra: str | None = None) -> str | None:
    """One line naming the extra to install, when ``err`` is an optional dependency's absence: the command's own
    extra (``command_extra``, e.g. ``bench`` for ``adadpo demo``) when it brings the missing package, else the
    package's."""
    top = (err.name or "").split(".")[0]
    if top not in EXTRAS:
        pip = getattr(err, "pip", None)  # a package of no extra, named by the check that needs it
        return f"{err}, which is not installed: pip install {pip}" if pip else None
    extra = EXTRAS[top]
    if command_extra and extra in INCLUDES.get(command_extra, (command_extra,)):
        extra = command_extra
    return f"No module named {top!r}: install the {extra!r} extra: pip install \"adadpo[{extra}]\""


def os_error_line(err: OSError) -> str:
    """One line for an ``OSError``: what, which file, and for a full disk what to do."""
    import errno

    what = err.strerror or " ".join(str(err).split()) or type(err).__name__
    where = f": {err.filename}" if err.filename else ""
    if err.errno == errno.ENOSPC:
        return (f"{what}{where}. Free some space, then run the same command again: training resumes from the last "
                "complete checkpoint")
    if err.errno in (errno.EACCES, errno.EROFS):
        return f"{what}{where}. Choose a location you can write to"
    return f"{what}{where}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adadpo",
        description="Preference optimisation with gradient-balanced updates (AdaDPO).",
    )
    parser.add_argument("--version", action="version", version=f"adadpo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    for command in sub.choices.values():
        accept_dashes(command)
        plain_help(command)
    for action in sub._choices_actions:  # the one-line help of each command in `adadpo --help`
        action.help = plain_text(action.help)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["explain", *argv]
    parser = build_parser()
    renamed = getattr(COMMANDS.get(argv[0]), "RENAMED", None)
    if renamed:
        argv[1:] = rename_old_options(argv[1:], renamed, f"adadpo {argv[0]}")
    if getattr(COMMANDS.get(argv[0]), "RAW_ARGS", False):  # the command parses its own arguments
        args = argparse.Namespace(command=argv[0], args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except ValueError as err:  # a user's mistake: say what, no traceback
        parser.exit(2, f"adadpo {args.command}: error: {err}\n")
    except KeyboardInterrupt as err:  # Ctrl-C: a clean stop (train's says how to resume)
        said = str(err) or "interrupted before anything was saved; run the same command again to start over"
        parser.exit(130, f"adadpo {args.command}: {said}\n")
    except FloatingPointError as err:  # training diverged (NonFiniteLossError): the step and the batch's statistics
        parser.exit(1, f"adadpo {args.command}: error: {err}\n")
    except OSError as err:  # the machine's doing (disk full, permissions, a stopped peer process): say what, where
        parser.exit(1, f"adadpo {args.command}: error: {os_error_line(err)}\n")
    except ModuleNotFoundError as err:  # an extra not installed: say which
        hint = missing_extra(err, getattr(COMMANDS[args.command], "EXTRA", None))
        if hint is None:
            raise
        parser.exit(2, f"adadpo {args.command}: error: {hint}\n")
