"""Command-line flags for :class:`adadpo.Balance`, derived from its fields: ``level`` -> ``--balance_level``, ...,
the names of ``AdaDPOConfig``'s ``balance_*`` fields (so ``adadpo train`` and the other commands spell them alike)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from adadpo.cli.options import add_bool_argument
from adadpo.core.balance import Balance, balance_options

#: The flags' names before they took the config's: ``--level`` -> ``--balance_level``, ... (see adadpo.cli.options).
OLD_NAMES = {f"--{o.name}": f"--balance_{o.name}" for o in balance_options()}


def add_balance_arguments(parser: argparse.ArgumentParser, only: Sequence[str] | None = None,
                          defaults: bool = True) -> None:
    """Add ``--balance_<field>`` (dest ``balance_<field>``) for each field of :class:`Balance` (or those in
    ``only``), with its type, choices and help; its default, or ``None`` with ``defaults=False`` (the caller
    fills it in, e.g. from a config file)."""
    for o in balance_options():
        if only is not None and o.name not in only:
            continue
        flag = f"--balance_{o.name}"
        default = o.default if defaults else None
        if o.kind is bool:
            add_bool_argument(parser, flag, default=default, help=f"{o.help} (default: {o.default})")
        else:
            parser.add_argument(flag, type=o.kind, default=default, choices=o.choices,
                                help=f"{o.help} (default: {o.default})")


def balance_from_args(args: argparse.Namespace) -> Balance:
    """The :class:`Balance` of the flags :func:`add_balance_arguments` added (defaults for the others)."""
    return Balance(**{o.name: getattr(args, f"balance_{o.name}") for o in balance_options()
                      if hasattr(args, f"balance_{o.name}")})
