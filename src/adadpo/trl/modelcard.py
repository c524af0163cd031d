"""The model card of a trained model: the method and its paper, and the adadpo section (every setting)."""

from __future__ import annotations

import os
import re
from dataclasses import fields
from typing import Any

import yaml

import adadpo
from adadpo.core.registry import ADADPO_PAPER as _ADADPO
from adadpo.core.registry import LOSSES

#: The paper of each plain loss family, ``(name, title, arXiv id)``, from its declaration in the registry.
PAPERS = {name: tuple(d.paper) for name, d in LOSSES.items()}
#: AdaDPO's paper, by its arXiv id (the card names it "AdaDPO" rather than guess a title).
ADADPO_PAPER = tuple(_ADADPO)


def method_paper(spec: Any, dpo_citation: str | None = None) -> tuple[str, dict[str, str]]:
    """The method's name and TRL's ``_paper`` mapping (title, arXiv id, BibTeX) for a :class:`adadpo.LossSpec`:
    AdaDPO's paper when balanced, the loss family's otherwise (TRL's own DPO citation ``dpo_citation`` for dpo)."""
    family = PAPERS.get(spec.loss)  # None for TRL's loss_types (hinge, a weighted list, ...)
    if spec.balance is not None:
        name, title, arxiv = ADADPO_PAPER
        if spec.loss != "dpo":
            name = f"AdaDPO ({family[0] if family else spec.loss})"
    else:  # TRL's loss_types are cited as stock TRL cites them: with its DPO paper
        name, title, arxiv = family or PAPERS["dpo"]
        if family is None:
            name = f"DPO ({spec.loss})"
    stock_dpo = spec.balance is None and (family is None or spec.loss == "dpo")
    key = f"{re.sub(r'[^a-z]', '', name.lower())}{arxiv.replace('.', '')}"
    known_title = None if (name, title, arxiv)[1:] == ADADPO_PAPER[1:] else title
    citation = dpo_citation if (stock_dpo and dpo_citation) else bibtex(key, arxiv, known_title)
    return name, {"title": title, "id": arxiv, "citation": citation}


def bibtex(key: str, arxiv: str, title: str | None) -> str:
    """A BibTeX entry of arXiv paper ``arxiv`` with only what is known here: the title when given, and the year and
    month its identifier (``YYMM.NNNNN``) encodes; for the authors (and a missing title) it points to the record."""
    year, month = 2000 + int(arxiv[:2]), MONTHS[int(arxiv[2:4]) - 1]
    entries = [("title", f"{{{title}}}")] if title else []
    entries += [("eprint", arxiv), ("archivePrefix", "arXiv"), ("year", str(year)), ("month", month),
                ("url", f"https://arxiv.org/abs/{arxiv}")]
    if not title:
        entries.append(("note", f"authors and title: see the arXiv record {arxiv}"))
    body = "".join(f"    {k:<14}= {{{v}}},\n" for k, v in entries)
    return f"@misc{{{key},\n{body}}}"


MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def finish_card(path: str, model: Any, dataset: str | None) -> None:
    """The card at ``path`` completed as stock's is: a PEFT adapter's metadata (``base_model``, ``pipeline_tag``,
    the ``base_model:adapter:...`` and ``lora`` tags, the PEFT version line) written by PEFT itself, as stock's
    final save does (TRL's card replaced it); a local dataset path removed from the ``datasets`` metadata (it is
    named in the text)."""
    from huggingface_hub import ModelCard

    if hasattr(model, "create_or_update_model_card") and hasattr(model, "peft_config"):
        model.create_or_update_model_card(os.path.dirname(path))
    if dataset and os.path.exists(os.path.expanduser(dataset)):
        card = ModelCard.load(path)
        datasets = card.data.get("datasets")
        if datasets:
            kept = [d for d in ([datasets] if isinstance(datasets, str) else datasets) if d != dataset]
            card.data["datasets"] = kept or None
            card.save(path)


def local_names(card: str, model: str | None, dataset: str | None) -> str:
    """TRL's card text for a model or dataset given as a local path: no ``[None]`` link nor a Hub link built
    from a path; the path named plainly instead."""
    local_model = model and os.path.isdir(os.path.expanduser(model))
    if local_model or not model:
        what = f"`{model}` (a local model)" if model else "a model without a Hub id"
        card = re.sub(r"a fine-tuned version of \[None\]\(https://huggingface.co/None\)",
                      f"a fine-tuned version of {what}", card)
    if dataset and os.path.exists(os.path.expanduser(dataset)):
        card = card.replace(f"[{dataset}](https://huggingface.co/datasets/{dataset})", f"`{dataset}` (local data)")
    return card


def settings_section(args: Any, mixed_precision: str | None = None) -> str:
    """Markdown: the loss and balance settings in a table (with the mixed precision that really ran, e.g. the
    accelerator's ``no``, ``bf16``, ``fp16``), then the whole configuration as YAML."""
    spec = args.loss_spec()
    rows = [
        ("loss", spec.loss),
        ("balance (AdaDPO)", spec.balance is not None),
        ("beta", spec.beta),
        *spec.params.items(),
    ]
    if spec.balance is not None:
        rows += [(f"balance.{f.name}", getattr(spec.balance, f.name)) for f in fields(spec.balance)]
        if getattr(args, "balance_placement", "") is None:  # chosen from the loss, not by the user
            chosen = f"(chosen for loss {spec.loss}: balance_placement unset)"
            rows = [(k, f"{v} {chosen}" if k == "balance.placement" else v) for k, v in rows]
    if mixed_precision is not None:
        rows.append(("mixed precision (as run)", {"no": "none (float32)"}.get(mixed_precision, mixed_precision)))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    config = {k: v for k, v in sorted(args.to_dict().items())}
    dump = yaml.safe_dump(config, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return (
        f"\n\n## adadpo\n\nTrained with adadpo {adadpo.__version__} (`AdaDPOTrainer`).\n\n"
        f"| setting | value |\n|---|---|\n{table}\n\n"
        f"<details><summary>Every setting ({type(args).__name__})</summary>\n\n```yaml\n{dump}```\n\n</details>\n"
    )


def training_procedure(args: Any, state: Any, adapter: Any = None, num_processes: int = 1) -> str:
    """Markdown for the card's "Training procedure": the loss and balance as run, the steps, batch and learning
    rate, the LoRA adapter (``adapter``: a peft ``LoraConfig``) if any, and the last logged training values."""
    spec = args.loss_spec()
    if spec.balance is not None:
        b = spec.balance
        clip = "off" if b.clip == float("inf") else f"{b.clip:g}"
        balance = (f"balanced (AdaDPO): level {b.level}, clip kappa {clip}, normalize {b.normalize}, placement "
                   f"{b.placement}" + (", on pi / pi_ref" if b.use_reference else ""))
    else:
        balance = "plain (no balance)"
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * num_processes
    schedule = args.lr_scheduler_type
    lines = [
        f"- loss: {spec.loss}, beta {spec.beta:g}, {balance}",
        f"- {_count(state.global_step, 'optimizer step')} of {batch} pairs ({args.per_device_train_batch_size} per "
        f"device x {args.gradient_accumulation_steps} accumulation x {_count(num_processes, 'process', 'es')}), "
        f"{state.epoch or 0:.3g} epochs",
        f"- learning rate {args.learning_rate:g} ({getattr(schedule, 'value', schedule)} schedule"
        + (f", warmup {args.warmup_steps} steps" if args.warmup_steps else "") + f"), max_length {args.max_length}",
    ]
    if adapter is not None:
        modules = ", ".join(sorted(adapter.target_modules)) if adapter.target_modules else "peft's default modules"
        lines.append(f"- LoRA adapter: r {adapter.r}, alpha {adapter.lora_alpha}, on {modules}; the reference is the "
                     "base model with the adapter disabled")
    last = next((h for h in reversed(state.log_history) if "loss" in h), None)
    if last is not None:
        keys = ("loss", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected", "balance/log_rho")
        shown = ", ".join(f"{k} {last[k]:.4g}" for k in keys if isinstance(last.get(k), (int, float)))
        lines.append(f"- last training log (step {last.get('step', state.global_step)}): {shown}")
    return "\n".join(lines) + "\n\nEvery setting is in the adadpo section below; the per-step logs in metrics.jsonl."


def _count(n: int, word: str, plural: str = "s") -> str:
    return f"{n} {word}{'' if n == 1 else plural}"


def complete_card(card: str, output_dir: str, procedure: str) -> str:
    """TRL's card with its blanks filled: the quick start loads ``output_dir`` (TRL writes ``model="None"`` when the
    model is not pushed to the Hub), the ``licence: license`` placeholder is removed (the licence is the base
    model's, which adadpo does not know), and "Training procedure" says how the model was trained."""
    card = card.replace('model="None"', f"model={output_dir!r}".replace("'", '"'))
    card = re.sub(r"^licence: license\n", "", card, flags=re.M)
    head, found, rest = card.partition("## Training procedure\n")
    if found:
        rest = re.sub(r"\A\s*", "\n" + procedure + "\n\n", rest, count=1)
    return head + found + rest
