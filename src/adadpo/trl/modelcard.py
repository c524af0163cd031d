"""The adadpo section of a trained model's card: what was trained, and every setting."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import yaml

import adadpo


def settings_section(args: Any) -> str:
    """Markdown: the loss and balance settings in a table, then the whole configuration as YAML."""
    spec = args.loss_spec()
    rows = [
        ("loss", spec.loss),
        ("balance (AdaDPO)", spec.balance is not None),
        ("beta", spec.beta),
        *spec.params.items(),
    ]
    if spec.balance is not None:
        rows += [(f"balance.{f.name}", getattr(spec.balance, f.name)) for f in fields(spec.balance)]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    config = {k: v for k, v in sorted(args.to_dict().items())}
    dump = yaml.safe_dump(config, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return (
        f"\n\n## adadpo\n\nTrained with adadpo {adadpo.__version__} (`AdaDPOTrainer`).\n\n"
        f"| setting | value |\n|---|---|\n{table}\n\n"
        f"<details><summary>Every setting ({type(args).__name__})</summary>\n\n```yaml\n{dump}```\n\n</details>\n"
    )
