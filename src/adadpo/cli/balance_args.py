"""Command-line flags for :class:`adadpo.Balance`, derived from its fields (``level`` -> ``--level``, ...)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from adadpo.core.balance import Balance, balance_options


def add_balance_arguments(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    """Add ``--<field>`` (underscores as dashes) for each field of :class:`Balance` (or those in ``only``),
    with its type, default, choices and help."""
    for o in balance_options():
        if only is not None and o.name not in only:
            continue
        flag = "--" + o.name.replace("_", "-")
        if o.kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=o.default, help=o.help)
        else:
            parser.add_argument(flag, type=o.kind, default=o.default, choices=o.choices,
                                help=f"{o.help} (default: {o.default})")


def balance_from_args(args: argparse.Namespace) -> Balance:
    """The :class:`Balance` of the flags :func:`add_balance_arguments` added (defaults for the others)."""
    return Balance(**{o.name: getattr(args, o.name) for o in balance_options() if hasattr(args, o.name)})
