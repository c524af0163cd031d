"""What every world's sampling and exact scoring share: the generate call, EOS, padding and masked tokens.

A world samples answers with a fixed, known process: temperature ``T`` on the model's logits, no top-k/top-p,
the tokens in ``never`` never emitted, EOS not allowed as the first token, an answer that reaches
``max_new_tokens`` without EOS cut there. So the process's log-probabilities can be computed exactly
(:func:`score` with ``process=True``), and a Monte Carlo KL between two policies sampled this way is an
unbiased estimate of a true KL. Without ``process``, :func:`score` gives ``log pi(y + EOS | x)`` under the model's
plain distribution, as the trainer scores a pair. A world says how text becomes token ids and how it seeds.

Two samplers of that process: :func:`generate` (``model.generate`` on one batch, the random stream of
``torch.multinomial``) and :func:`stream_sample` (continuous batching over many batches, one uniform per token;
for long answers, where a batch of ``generate`` runs as long as its longest row).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

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


# ------------------------------------------------------------------------------------------ the stream sampler


@torch.no_grad()
def stream_sample(model, tokenizer, batches: Sequence[Sequence[str]], seeds: Sequence[int], *, temperature: float,
                  max_new_tokens: int, never: list[int], width: int = 64,
                  on_batch: Callable[[int, list[Answer]], None] | None = None,
                  stats: dict[str, float] | None = None) -> list[list[Answer]]:
    """Answers to every prompt of ``batches`` (a list of prompt lists), sampled with the same process as
    :func:`generate` but decoded as one stream of at most ``width`` rows (continuous batching).

    * **Rows leave as they end.** A row that emits EOS or reaches ``max_new_tokens`` is dropped from the KV cache
      and a waiting row takes its place, so a batch no longer runs as long as its longest answer, and a decode
      step costs the model's weights once for ``width`` rows rather than for the few that still run.
    * **One uniform per token, fixed in advance.** Row ``r`` of batch ``b`` draws its ``t``-th token by inverting
      the process's CDF at ``U_b[r, t]``, where ``U_b = torch.rand(len(batch), max_new_tokens)`` (float64) from a
      generator seeded with ``seeds[b]``: token ``i`` is chosen when ``c_{i-1} <= u * c_V < c_i`` (``c`` the
      float64 running sum of the float32 softmax of ``logits / T`` with ``never``, and EOS at ``t = 0``, at
      ``-inf``), i.e. with the process's probability. A row's answer therefore depends on its seed alone, not
      on which rows shared its decode steps, up to float rounding of other batch shapes; and drawing one number
      per token replaces ``torch.multinomial``'s ``V`` exponentials per row and step (95 ms per step for 64
      rows of SmolLM2's 49152 tokens). The stream differs from ``torch.multinomial``'s, so the tokens differ
      from :func:`generate`'s for the same seed; the distribution is the same.
    * **The prompt's prefill is shared** between the repeated prompts of a batch, as in :func:`generate`.

    Returns, per batch and prompt, ``(ids, ended, logp)``: the answer's token ids without EOS, whether it ended
    with EOS, and ``log p`` of the sampled tokens (EOS included where it ended) under the process, as
    :func:`score` with ``process=True`` computes it. ``on_batch(b, answers)`` is called as batch ``b`` finishes
    (batches can finish out of order). ``stats``, when given, is filled with where the time went: seconds of
    ``prefill``, ``rebuild`` (cache copies as rows leave and join), ``decode`` (model forward) and ``draw``
    (softmax, CDF and bookkeeping), ``steps``, ``row_steps`` (rows computed, summed over steps) and
    ``dead_row_steps`` (of those, rows that had ended and waited for the next rebuild).
    """
    if width < 1 or max_new_tokens < 1:
        raise ValueError(f"width={width} and max_new_tokens={max_new_tokens}: both must be at least 1")
    eos, forward = tokenizer.eos_token_id, _forward(model)
    results: list[list[Answer | None]] = [[None] * len(b) for b in batches]
    left = [len(b) for b in batches]
    waiting: list[_Row] = []
    pending = iter(range(len(batches)))
    live = _Live.empty(model)
    clock = _Clock(stats)
    while True:
        while len(waiting) < width - live.alive and (b := next(pending, None)) is not None:
            if batches[b]:
                with clock("prefill"):
                    waiting += _prefill(model, forward, tokenizer, batches[b], b, seeds[b], max_new_tokens)
            else:
                _report(on_batch, b, results)
        free = width - live.alive
        if (waiting and free >= min(len(waiting), max(1, width // 8))) or len(live.dead) * 4 >= max(live.n, 1):
            take = min(free, len(waiting))
            with clock("rebuild"):
                live = live.rebuild(waiting[:take])
            waiting = waiting[take:]
        if not live.rows:
            break
        clock.count(steps=1, row_steps=live.n, dead_row_steps=len(live.dead))
        with clock("decode"):
            logits = live.step(forward)
        clock.start("draw")
        scores = logits.float() / temperature
        scores[:, never] = -torch.inf
        scores[torch.tensor([row.t == 0 for row in live.rows]), eos] = -torch.inf
        probs = torch.softmax(scores, -1)
        tokens = draw(probs, torch.stack([row.uniforms[min(row.t, max_new_tokens - 1)] for row in live.rows]))
        chosen = probs.gather(1, tokens[:, None])[:, 0].double().log()
        for i, (row, tok, lp) in enumerate(zip(live.rows, tokens.tolist(), chosen.tolist())):
            if i in live.dead:
                continue
            row.logp += lp
            row.t += 1
            row.feed = tok
            ended = tok == eos
            if not ended:
                row.ids.append(tok)
            if ended or row.t == max_new_tokens:
                live.dead.add(i)
                results[row.batch][row.index] = (row.ids, ended, row.logp)
                left[row.batch] -= 1
                if not left[row.batch]:
                    _report(on_batch, row.batch, results)
        clock.stop("draw")
    return results  # type: ignore[return-value]


#: One sampled answer: token ids without EOS, whether it ended with EOS, log-probability under the process.
Answer = tuple[list[int], bool, float]


def draw(probs: Tensor, u: Tensor) -> Tensor:
    """``[W]`` token ids drawn from the rows of ``probs`` ``[W, V]`` by inverting their CDF at ``u`` ``[W]``
    (float64 uniforms in ``[0, 1)``): token ``i`` where ``c_{i-1} <= u * c_V < c_i``, ``c`` the float64 running
    sum of the row, so token ``i`` has probability ``p_i / sum(p)`` and a token of probability 0 is never drawn."""
    cdf = probs.double().cumsum(-1)
    total = cdf[:, -1]
    x = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, x[:, None], right=True)[:, 0]


class _Clock:
    """Seconds and counts of :func:`stream_sample`'s parts, added to ``stats`` (nothing when it is None)."""

    def __init__(self, stats: dict[str, float] | None):
        self.stats, self.t0 = stats, 0.0

    def start(self, part: str) -> None:
        self.t0 = time.perf_counter()

    def stop(self, part: str) -> None:
        if self.stats is not None:
            self.stats[part] = self.stats.get(part, 0.0) + time.perf_counter() - self.t0

    @contextmanager
    def __call__(self, part: str):
        self.start(part)
        yield
        self.stop(part)

    def count(self, **counts: int) -> None:
        if self.stats is not None:
            for k, v in counts.items():
                self.stats[k] = self.stats.get(k, 0) + v


def _report(on_batch, b: int, results: list) -> None:
    if on_batch is not None:
        on_batch(b, results[b])


def _forward(model) -> Callable:
    """``model``'s forward with its cache passed under the name its ``transformers`` version takes (5.x renamed
    ``past_key_values`` to ``cache``)."""
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def run(cache, **kwargs):
        out = model(**kwargs, **{name: cache}, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], out[name]

    return run


@dataclass
class _Row:
    """A prompt waiting for, or being decoded in, the stream: its place (``batch``, ``index``), its uniforms,
    the last prompt token's cache (``keys``/``values`` per layer ``[H, P-1, D]``), what it feeds next and at
    which position, the answer so far and its log-probability."""

    batch: int
    index: int
    uniforms: Tensor
    keys: list[Tensor]
    values: list[Tensor]
    feed: int
    position: int
    ids: list[int] = field(default_factory=list)
    t: int = 0
    logp: float = 0.0


def _prefill(model, forward, tokenizer, prompts: Sequence[str], b: int, seed: int, max_new_tokens: int) -> list[_Row]:
    """The rows of batch ``b``: every distinct prompt's tokens but the last run once (left-padded, positions
    from the mask as :func:`generate` does), each row keeping its prompt's cache without the padding."""
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    for i, p in zip(ids, prompts):
        if not i:
            raise ValueError(f"prompt {p!r}: it encodes to no tokens; a prompt needs at least one")
    distinct = list(dict.fromkeys(map(tuple, ids)))
    width = max(map(len, distinct)) - 1
    if width == 0:
        kv = [(k.expand(len(distinct), -1, -1, -1), k.expand(len(distinct), -1, -1, -1)) for k in _empty_kv(model)]
    else:
        mask = torch.tensor([[0] * (width + 1 - len(d)) + [1] * (len(d) - 1) for d in distinct])
        head = torch.tensor([[0] * (width + 1 - len(d)) + list(d[:-1]) for d in distinct])
        position = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        _, cache = forward(DynamicCache(), input_ids=head, attention_mask=mask, position_ids=position)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
    where = {d: i for i, d in enumerate(distinct)}
    uniforms = torch.rand(len(prompts), max_new_tokens, generator=torch.Generator().manual_seed(seed),
                          dtype=torch.float64)
    rows = []
    for r, i in enumerate(ids):
        g, n = where[tuple(i)], len(i) - 1
        rows.append(_Row(b, r, uniforms[r], [k[g, :, width - n :] for k, _ in kv],
                         [v[g, :, width - n :] for _, v in kv], i[-1], n))
    return rows


def _empty_kv(model) -> list[Tensor]:
    """Per layer, an empty ``[1, H, 0, D]`` key (or value) tensor of ``model``'s cache."""
    c = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    d = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return [torch.zeros(1, c.num_key_value_heads, 0, d, dtype=model.dtype)] * c.num_hidden_layers


class _GrowingLayer(DynamicLayer):
    """A cache layer whose ``keys``/``values`` ``[W, H, L, D]`` are views of a buffer with room to grow, so a
    decode step writes its token in place instead of copying the whole cache (``DynamicLayer``'s ``torch.cat``,
    which at ``W = 64`` rows and ``L = 250`` positions moves SmolLM2's 0.7 GB per step)."""

    ROOM = 32

    def __init__(self, buffer_k: Tensor, buffer_v: Tensor, length: int):
        super().__init__()
        self.is_initialized, self.device = True, buffer_k.device
        self._k, self._v = buffer_k, buffer_v
        self.keys, self.values = buffer_k[:, :, :length], buffer_v[:, :, :length]

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        n, q = self.keys.shape[-2], key_states.shape[-2]
        if n + q > self._k.shape[-2]:
            grow = lambda t: torch.cat([t, t.new_zeros(*t.shape[:2], q + self.ROOM, t.shape[-1])], -2)  # noqa: E731
            self._k, self._v = grow(self.keys), grow(self.values)
        self._k[:, :, n : n + q] = key_states
        self._v[:, :, n : n + q] = value_states
        self.keys, self.values = self._k[:, :, : n + q], self._v[:, :, : n + q]
        return self.keys, self.values


class _Live:
    """The rows being decoded: their cache (one :class:`_GrowingLayer` per layer, rows right-aligned, left
    padding masked), the attention mask ``[W, L]`` and the rows that ended but still sit in the cache."""

    def __init__(self, rows: list[_Row], cache: DynamicCache, mask: Tensor):
        self.rows, self.cache, self.mask, self.dead = rows, cache, mask, set()

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def alive(self) -> int:
        return len(self.rows) - len(self.dead)

    @classmethod
    def empty(cls, model) -> _Live:
        cache = DynamicCache()
        cache.layers = [_GrowingLayer(k, k, 0) for k in _empty_kv(model)]
        return cls([], cache, torch.zeros(0, 0, dtype=torch.long))

    def rebuild(self, new: list[_Row]) -> _Live:
        """The rows still running followed by ``new``, in a fresh cache as wide as the longest of them (columns
        that only held padding or ended rows are gone)."""
        keep = [i for i in range(self.n) if i not in self.dead]
        mask = self.mask[keep]
        start = int((mask.sum(0) > 0).int().argmax()) if mask.any() else mask.shape[1]
        old = mask.shape[1] - start
        length = max([old] + [r.position for r in new])
        rows = [self.rows[i] for i in keep] + new
        full = torch.zeros(len(rows), length, dtype=torch.long)
        full[: len(keep), length - old :] = mask[:, start:]
        for j, r in enumerate(new):
            full[len(keep) + j, length - r.position :] = 1
        layers = []
        for li, layer in enumerate(self.cache.layers):
            bufs = []
            for cached, name in ((layer.keys, "keys"), (layer.values, "values")):
                h, d = cached.shape[1], cached.shape[-1]
                buf = cached.new_zeros(len(rows), h, length + _GrowingLayer.ROOM, d)
                buf[: len(keep), :, length - old : length] = cached[keep, :, start:]
                for j, r in enumerate(new):
                    buf[len(keep) + j, :, length - r.position : length] = getattr(r, name)[li]
                bufs.append(buf)
            layers.append(_GrowingLayer(*bufs, length))
        for r in new:
            r.keys = r.values = []  # type: ignore[assignment]
        cache = DynamicCache()
        cache.layers = layers
        return _Live(rows, cache, full)

    def step(self, forward) -> Tensor:
        """One decode step of every row (its ``feed`` token at its ``position``): the ``[W, V]`` next-token logits."""
        ids = torch.tensor([[r.feed] for r in self.rows])
        position = torch.tensor([[r.position] for r in self.rows])
        self.mask = torch.cat([self.mask, torch.ones(self.n, 1, dtype=torch.long)], 1)
        logits, _ = forward(self.cache, input_ids=ids, attention_mask=self.mask, position_ids=position)
        for r in self.rows:
            r.position += 1
        return logits
