"""The adadpo section of a trained model's card: what was trained, and every setting."""

from __future__ import annotations

from typing import Any

import yaml

import adadpo


def settings_section(args: Any) -> str:
    """Markdown: the loss and balance settings in a table, then the whole configuration as YAML."""
    balance = args.balance_spec
    rows = [
        ("loss", args.loss),
        ("balance (AdaDPO)", args.balance),
        ("beta", args.beta),
        *((k, v) for k, v in args.loss_params.items()),
    ]
    if args.balance:
        rows += [(f"balance.{k}", getattr(balance, k)) for k in balance.__dataclass_fields__]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    config = {k: v for k, v in sorted(args.to_dict().items())}
    dump = yaml.safe_dump(config, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return (
        f"\n\n## adadpo\n\nTrained with adadpo {adadpo.__version__} (`AdaDPOTrainer`).\n\n"
        f"| setting | value |\n|---|---|\n{table}\n\n"
        f"<details><summary>Every setting ({type(args).__name__})</summary>\n\n```yaml\n{dump}```\n\n</details>\n"
    )
