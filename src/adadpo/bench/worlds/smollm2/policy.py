"""Chat prompts, batched sampling and exact scoring of answers under a real causal LM.

The sampling process is the benchmark's (:mod:`adadpo.bench.sampling`: temperature ``T``, no top-k/top-p, EOS
not first, cut at ``max_new_tokens``) with every special token other than EOS never emitted, each batch seeded
on its own and journalled. :func:`response_logps` scores an answer either under that process (for the KL
between two policies' sampling distributions) or under the model's plain distribution at temperature 1 with
EOS appended (how the trainer scores a pair).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from adadpo.bench.sampling import answer_batch, cut_at_eos, generate, score, stream_sample


@dataclass
class Samples:
    """Sampled answers, prompt-major: ``tokens`` (ids, without EOS), ``texts`` (decoded, special tokens
    removed, stripped) and ``ended`` (whether the answer ended with EOS rather than at the length limit)."""

    tokens: list[list[int]]
    texts: list[str]
    ended: list[bool]


def messages(system: str, user: str) -> list[dict[str, str]]:
    """A chat prompt as messages: the system prompt (when there is one) and the user's."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def chat_prompt(tokenizer, system: str, user: str) -> str:
    """The prompt string the policy answers: the chat template with a generation prompt."""
    return tokenizer.apply_chat_template(messages(system, user), tokenize=False, add_generation_prompt=True)


def never_emitted(tokenizer) -> list[int]:
    """Token ids the sampling process never emits: every special token except EOS."""
    return sorted(set(tokenizer.all_special_ids) - {tokenizer.eos_token_id})


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def batch_seed(seed: int, batch: int) -> int:
    """The torch seed of batch ``batch`` of a :func:`sample` call with ``seed``: each batch draws from its own
    stream, so a batch can be redone alone (a resumed build) and gives the same answers."""
    return int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])


def sample(model, tokenizer, prompts: Sequence[str], *, n: int, max_new_tokens: int, temperature: float, seed: int,
           batch_size: int = 64, progress: Callable[[int, int], None] | None = None,
           journal: str | os.PathLike | None = None, engine: str = "stream") -> Samples:
    """``n`` answers per chat prompt (strings from :func:`chat_prompt`), prompt-major, in batches of
    ``batch_size`` answers, batch ``b`` seeded with :func:`batch_seed` ``(seed, b)``.

    ``engine``: ``"stream"`` (:func:`adadpo.bench.sampling.stream_sample`: at most ``batch_size`` rows decode
    together, a row leaves as it ends and the next batch's rows take its place; each answer is a function of
    its batch's seed and its place in the batch, whatever shared its decode steps) or ``"generate"``
    (:func:`adadpo.bench.sampling.generate`, one ``model.generate`` per batch: every batch runs as long as its
    longest answer; the answers of this world before issue 31). Both sample the same process; their random
    streams differ, so their answers for one seed do.

    ``journal``: a JSON-lines file that every finished batch is appended to (flushed and synced); batches
    already in it (from a call with the same seed, batch size, number of answers and engine) are read back
    instead of sampled, so a killed call resumes where it stopped.
    """
    if engine not in ("stream", "generate"):
        raise ValueError(f"engine={engine!r}: expected 'stream' or 'generate'")
    flat = [p for p in prompts for _ in range(n)]
    key = {"seed": seed, "batch_size": batch_size, "total": len(flat), "engine": engine}
    done = _read_journal(journal, key)
    eos = tokenizer.eos_token_id
    never = never_emitted(tokenizer)
    starts = range(0, len(flat), batch_size)
    count = sum(len(done[b].tokens) for b in done)
    if progress:
        progress(count, len(flat))

    def finished(b: int, rows: list[tuple[list[int], bool]]) -> None:
        nonlocal count
        batch = Samples([ids for ids, _ in rows], [tokenizer.decode(ids, skip_special_tokens=True).strip()
                                                   for ids, _ in rows], [ended for _, ended in rows])
        _append_journal(journal, {**key, "batch": b, **asdict(batch)})
        done[b] = batch
        count += len(rows)
        if progress:
            progress(count, len(flat))

    todo = [b for b in range(len(starts)) if b not in done]
    if engine == "stream":
        stream_sample(model, tokenizer, [flat[starts[b] : starts[b] + batch_size] for b in todo],
                      [batch_seed(seed, b) for b in todo], temperature=temperature, max_new_tokens=max_new_tokens,
                      never=never, width=batch_size,
                      on_batch=lambda i, answers: finished(todo[i], [(ids, ended) for ids, ended, _ in answers]))
    else:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        with torch.no_grad():
            for b in todo:
                torch.manual_seed(batch_seed(seed, b))
                finished(b, [cut_at_eos(row, eos) for row in generate(
                    model, tokenizer, flat[starts[b] : starts[b] + batch_size], temperature=temperature,
                    max_new_tokens=max_new_tokens, never=never, pad=pad)])
    out = Samples([], [], [])
    for b in range(len(starts)):
        out.tokens += done[b].tokens
        out.ended += done[b].ended
        out.texts += done[b].texts
    return out


def _read_journal(path: str | os.PathLike | None, key: dict) -> dict[int, Samples]:
    """The batches of a :func:`sample` journal written by a call with the same ``key`` (seed, batch size,
    number of answers and engine; a line without an engine is ``generate``'s, written before there was a
    choice); others, and a torn last line, are ignored."""
    done: dict[int, Samples] = {}
    if path is None or not os.path.exists(path):
        return done
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if {k: row.get(k, "generate" if k == "engine" else None) for k in key} == key:
                done[row["batch"]] = Samples(row["tokens"], row["texts"], row["ended"])
    return done


def _append_journal(path: str | os.PathLike | None, row: dict) -> None:
    if path is None:
        return
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def response_logps(model, tokenizer, prompts: Sequence[str], answers: Sequence[Sequence[int]],
                   ended: Sequence[bool] | None = None, temperature: float = 1.0, batch_size: int = 16) -> Tensor:
    """``[N]`` float32 log-probabilities of answer token ids given chat prompts, summed over the answer.

    ``ended=None``: ``log pi(y + EOS | x)`` under the model's plain distribution (``temperature`` ignored).
    With ``ended``: the exact log-probability of the sampling process of :func:`sample` at ``temperature``
    (never-emitted tokens masked, EOS masked at the first position, EOS scored only where the answer ended).
    """
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    out = []
    with torch.no_grad():
        for s in range(0, len(prompts), batch_size):
            rows = range(s, min(s + batch_size, len(prompts)))
            batch = answer_batch([_encode(tokenizer, prompts[i]) for i in rows], [answers[i] for i in rows],
                                 None if ended is None else [ended[i] for i in rows], eos=eos, pad=pad)
            out.append(score(model, batch, process=ended is not None, never=never_emitted(tokenizer), eos=eos,
                             temperature=temperature))
    return torch.cat(out) if out else torch.zeros(0)
