"""What every world's sampling and exact scoring share: the generate call, EOS, padding and masked tokens.

A world samples answers with a fixed, known process: temperature ``T`` on the model's logits, no top-k/top-p,
the tokens in ``never`` never emitted, EOS not allowed as the first token, an answer that reaches
``max_new_tokens`` without EOS cut there. So the process's log-probabilities can be computed exactly
(:func:`score` with ``process=True``), and a Monte Carlo KL between two policies sampled this way is an
unbiased estimate of a true KL. Without ``process``, :func:`score` gives ``log pi(y + EOS | x)`` under the model's
plain distribution, as the trainer scores a pair. A world says how text becomes token ids and how it seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from adadpo import sequence_logps


def generate(model, tokenizer, prompts: Sequence[str], *, temperature: float, max_new_tokens: int,
             never: list[int], pad: int) -> list[list[int]]:
    """One batch of sampled continuations of ``prompts`` (left-padded, no special tokens added), as token-id
    lists that run to ``max_new_tokens`` or to EOS and padding (cut them with :func:`cut_at_eos`)."""
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    gen = model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0, min_new_tokens=1,
                         max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
                         suppress_tokens=never, **_shared_prompts(model, prompts, enc))
    return gen[:, enc["input_ids"].shape[1] :].tolist()


def _shared_prompts(model, prompts: Sequence[str], enc) -> dict:
    """When a batch repeats prompts (several answers per prompt), the ``past_key_values`` of every prompt but
    its last token, computed once per distinct prompt and copied to its rows; ``generate`` then runs only the
    last prompt token and the answer. The same positions as ``generate``'s own prefill (from the left-padded
    mask), so only float rounding of another batch shape differs. ``{}`` when nothing repeats."""
    first: dict[str, int] = {}
    rows = [first.setdefault(p, i) for i, p in enumerate(prompts)]
    ids, mask = enc["input_ids"], enc["attention_mask"]
    if len(first) == len(prompts) or ids.shape[1] < 2:
        return {}
    distinct = torch.tensor(sorted(first.values()))
    where = {row: i for i, row in enumerate(distinct.tolist())}
    head_ids, head_mask = ids[distinct, :-1], mask[distinct, :-1]
    position_ids = (head_mask.long().cumsum(-1) - 1).masked_fill(head_mask == 0, 1)
    with torch.no_grad():
        out = model(input_ids=head_ids, attention_mask=head_mask, position_ids=position_ids, use_cache=True,
                    logits_to_keep=1)
    # transformers 5.x renamed ``past_key_values`` to ``cache`` (outputs and generate's keyword; the old name warns)
    name = "cache" if "cache" in out.keys() else "past_key_values"
    cache = out[name]
    cache.batch_select_indices(torch.tensor([where[r] for r in rows]))
    return {name: cache}


def cut_at_eos(row: list[int], eos: int) -> tuple[list[int], bool]:
    """The answer's token ids before the first EOS, and whether it ended with EOS (not at the length limit)."""
    ids = row[: row.index(eos)] if eos in row else row
    return ids, len(ids) < len(row)


def answer_batch(prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], ended: Sequence[bool] | None,
                 *, eos: int, pad: int) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` of prompt + answer + EOS (no EOS where
    ``ended`` is False); labels are -100 outside the answer and its EOS."""
    rows, labels = [], []
    for i, (p, a) in enumerate(zip(prompts, answers)):
        r = list(a) + ([eos] if ended is None or ended[i] else [])
        rows.append(list(p) + r)
        labels.append([-100] * len(p) + r)
    width = max(map(len, rows))
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    lab = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    return ids, mask, lab


def score(model, batch: tuple[Tensor, Tensor, Tensor], *, process: bool, never: list[int], eos: int,
          temperature: float = 1.0) -> Tensor:
    """``[N]`` float32 log-probabilities of the answers of an :func:`answer_batch`, summed over the answer:
    under the sampling process at ``temperature`` (``process=True``: ``never`` masked, EOS masked at the first
    position; build the batch with the answers' ``ended``) or under the plain distribution (``temperature``
    unused)."""
    ids, mask, labels = batch
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
    if process:
        logits = logits / temperature
        logits[:, :, never] = -torch.inf
        first = (labels != -100).int().argmax(1)  # first answer position of each row
        logits[torch.arange(len(ids)), first - 1, eos] = -torch.inf
    return sequence_logps(logits, labels).logps
