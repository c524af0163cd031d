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
                         suppress_tokens=never)
    return gen[:, enc["input_ids"].shape[1] :].tolist()


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
