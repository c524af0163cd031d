"""The stream sampler (:func:`adadpo.bench.sampling.stream_sample`) samples the world's process, whatever the
rows that share its decode steps.

Its random stream is not ``torch.multinomial``'s (one uniform per token instead of ``V`` exponentials), so its
answers cannot equal ``model.generate``'s token for token; what is tested instead:

* the draw: inverting the CDF gives token ``i`` on exactly ``[c_{i-1}, c_i) / c_V`` (against numpy's running
  sum) and its frequencies pass a chi-square test;
* the process: every answer's log-probability as the sampler drew it equals :func:`score` with
  ``process=True`` (temperature, ``never`` masked, EOS not first, cut at the cap), so each step sampled from the
  process's distribution; and the answers' lengths and first tokens match ``generate``'s in distribution;
* the schedule: the same seeds give the same answers at every width (1 row at a time, a few, all at once), in
  any order of batches, so a journalled batch redone alone is the batch it was.

Runs on the tiny stand-in for SmolLM2 (tests/lmworld_fixtures.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("gguf")

import lmworld_fixtures  # noqa: E402

from adadpo.bench import sampling  # noqa: E402
from adadpo.bench.sampling import answer_batch, draw, generate, score, stream_sample  # noqa: E402
from adadpo.bench.worlds.smollm2 import policy as lmpolicy  # noqa: E402
from adadpo.bench.worlds.smollm2.policy import batch_seed, chat_prompt, never_emitted, sample  # noqa: E402

tiny_model = lmworld_fixtures.tiny_model
USERS = ("What color is grass?", "Hello there.", "List two fruits, please, and say why.", "What is 3 + 4?")
EOS_BIAS, NEVER_BIAS = 3.0, 8.0


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def model(tiny_model, tokenizer):
    """The tiny model, in float64 (so other batch shapes round alike and answers can be compared exactly), with
    a head bias that makes EOS likely enough for answers of every length and the never-emitted tokens the
    likeliest of all, were they not masked."""
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tiny_model).eval().double()
    bias = torch.zeros(m.config.vocab_size, dtype=torch.float64)
    bias[never_emitted(tokenizer)], bias[tokenizer.eos_token_id] = NEVER_BIAS, EOS_BIAS
    m.lm_head.register_forward_hook(lambda _module, _inputs, logits: logits + bias)
    return m


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return [chat_prompt(tokenizer, "Be brief.", u) for u in USERS]


def run(model, tokenizer, batches, seeds, cap, width, temperature=0.8, **kw):
    return stream_sample(model, tokenizer, batches, seeds, temperature=temperature, max_new_tokens=cap,
                         never=never_emitted(tokenizer), width=width, **kw)


# ------------------------------------------------------------------------------------------------ the draw


@given(st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 10)), min_size=1, max_size=12).filter(lambda p: sum(p) > 0),
       st.floats(0, 1, exclude_max=True))
def test_draw_inverts_the_cdf(p, u):
    """Token ``i`` exactly when ``c_{i-1} <= u * c_V < c_i`` (numpy's float64 running sum of the float32 row);
    zero-probability tokens never, whatever ``u``, including the ends of the intervals."""
    probs = torch.tensor([p], dtype=torch.float32)
    c = np.cumsum(probs[0].double().numpy())
    for x in [u, *(c / c[-1])[:-1], np.nextafter(1.0, 0.0)]:
        tok = int(draw(probs, torch.tensor([x], dtype=torch.float64))[0])
        lo = c[tok - 1] if tok else 0.0
        target = min(x * c[-1], np.nextafter(c[-1], 0.0))
        assert lo <= target < c[tok] and probs[0, tok] > 0


def test_draw_frequencies_are_the_probabilities():
    from scipy.stats import chisquare

    probs = torch.tensor([[0.5, 0.0, 0.2, 0.25, 1e-7, 0.05]])
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tokens = draw(probs.expand(len(u), -1), u)
    counts = torch.bincount(tokens, minlength=6).numpy()
    assert counts[1] == 0
    expected = (probs[0] / probs.sum()).double().numpy() * len(u)
    keep = expected > 5
    assert chisquare(counts[keep], expected[keep] * counts[keep].sum() / expected[keep].sum()).pvalue > 1e-3


# ------------------------------------------------------------------------------------------------ the process


@pytest.mark.parametrize(("temperature", "cap"), [(0.7, 6), (1.0, 3), (1.3, 1)])
def test_answers_follow_the_process(model, tokenizer, prompts, temperature, cap):
    """Each answer: no never-emitted token, no EOS inside, at least one token, cut exactly at the cap; its
    log-probability as drawn equals :func:`score`'s exact process log-probability."""
    batches = [[p for p in prompts for _ in range(3)], prompts[:2]]
    out = run(model, tokenizer, batches, [5, 6], cap, width=5, temperature=temperature)
    eos, never = tokenizer.eos_token_id, set(never_emitted(tokenizer))
    flat = [a for b in out for a in b]
    assert [len(b) for b in out] == [len(b) for b in batches]
    for ids, ended, _ in flat:
        assert 1 <= len(ids) <= cap and not (set(ids) & never) and eos not in ids
        assert ended == (len(ids) < cap)
    if cap > 1:
        assert any(e for _, e, _ in flat) and not all(e for _, e, _ in flat)
    enc = [tokenizer(p, add_special_tokens=False)["input_ids"] for b in batches for p in b]
    batch = answer_batch(enc, [a[0] for a in flat], [a[1] for a in flat], eos=eos, pad=eos)
    with torch.no_grad():
        exact = score(model, batch, process=True, never=sorted(never), eos=eos, temperature=temperature)
    assert torch.allclose(torch.tensor([a[2] for a in flat], dtype=torch.float64), exact.double(), atol=1e-4)


def test_lengths_and_first_tokens_match_generate_in_distribution(model, tokenizer, prompts):
    """600 answers to one prompt from each sampler: the two-sample chi-square tests on the answer's length
    (ended or cut) and on its first token (the likeliest ones, the rest pooled) do not tell them apart."""
    from scipy.stats import chi2_contingency

    cap, n, eos = 4, 600, tokenizer.eos_token_id
    never = never_emitted(tokenizer)
    streamed = [a for b in run(model, tokenizer, [[prompts[1]] * 100] * (n // 100), range(n // 100), cap, 100,
                               temperature=1.0) for a in b]
    generated = []
    for b in range(n // 100):
        torch.manual_seed(b)
        with torch.no_grad():
            rows = generate(model, tokenizer, [prompts[1]] * 100, temperature=1.0, max_new_tokens=cap, never=never,
                            pad=eos)
        generated += [(r[: r.index(eos)] if eos in r else r, eos in r) for r in rows]
    length = lambda ids, ended: len(ids) + cap * (not ended)  # noqa: E731
    lengths = [[length(i, e) for i, e, *_ in answers] for answers in (streamed, generated)]
    firsts = [[i[0] for i, *_ in answers] for answers in (streamed, generated)]
    top = [t for t, c in zip(*np.unique(firsts[0] + firsts[1], return_counts=True)) if c >= 20]
    firsts = [[t if t in top else -1 for t in f] for f in firsts]
    for a, b in zip(lengths, firsts):
        assert len(set(a)) > 2 and len(set(b)) > 2  # the distributions are not degenerate
    for a, b in (lengths, firsts):
        cats = sorted(set(a) | set(b))
        table = [[a.count(c) for c in cats], [b.count(c) for c in cats]]
        assert chi2_contingency(table).pvalue > 1e-3


# ------------------------------------------------------------------------------------------------ the schedule


def test_answers_do_not_depend_on_the_schedule(model, tokenizer, prompts, monkeypatch):
    """Widths 1, 3 and 64, the batches in reverse order, a cache that must grow at every step: the same
    answers for the same seeds; each batch reported once, with its answers."""
    batches = [[p for p in prompts for _ in range(2)], [prompts[2]] * 3, [], prompts[::-1]]
    seeds = [batch_seed(3, b) for b in range(len(batches))]
    reported = {}
    first = run(model, tokenizer, batches, seeds, 5, 1, on_batch=lambda b, a: reported.setdefault(b, list(a)))
    assert sorted(reported) == [0, 1, 2, 3] and [reported[b] for b in range(4)] == first
    for width in (3, 64):
        assert run(model, tokenizer, batches, seeds, 5, width) == first
    assert run(model, tokenizer, batches[::-1], seeds[::-1], 5, 3) == first[::-1]
    monkeypatch.setattr(sampling._GrowingLayer, "ROOM", 0)
    assert run(model, tokenizer, batches, seeds, 5, 64) == first
    assert run(model, tokenizer, batches, [s + 1 for s in seeds], 5, 3) != first  # the seed matters


def test_single_token_prompts_and_bad_settings(model, tokenizer):
    """A one-token prompt has no prefill (an empty cache row beside longer ones); an empty prompt or a width
    or cap below 1 is one clear error."""
    one = tokenizer.decode([tokenizer("Hi", add_special_tokens=False)["input_ids"][0]])
    out = run(model, tokenizer, [[one, one, "Hello there, friend."]], [0], 3, 2)
    assert [len(a[0]) >= 1 for a in out[0]] == [True] * 3
    assert run(model, tokenizer, [[one]], [0], 3, 1)[0][0] == out[0][0]
    with pytest.raises(ValueError, match="encodes to no tokens"):
        run(model, tokenizer, [[""]], [0], 3, 2)
    with pytest.raises(ValueError, match="width=0"):
        run(model, tokenizer, [[one]], [0], 3, 0)


# ------------------------------------------------------------------------------------------------ sample()


def test_sample_resumes_from_its_journal_and_keeps_engines_apart(model, tokenizer, prompts, tmp_path, monkeypatch):
    """A call killed after its first batches resumes from the journal with the same answers; a journal of the
    other engine is not read back; an unknown engine is one clear error."""
    kwargs = dict(n=3, max_new_tokens=4, temperature=0.9, seed=2, batch_size=5)
    whole = sample(model, tokenizer, prompts, **kwargs)
    journal = tmp_path / "j.jsonl"
    sample(model, tokenizer, prompts, **kwargs, journal=journal)
    lines = journal.read_text().splitlines()
    assert len(lines) == 3 and {json.loads(x)["engine"] for x in lines} == {"stream"}
    journal.write_text("\n".join(lines[:2]) + "\n" + lines[2][:10])  # killed while writing the third
    sampled = []
    real = lmpolicy.stream_sample
    monkeypatch.setattr(lmpolicy, "stream_sample", lambda m, t, batches, *a, **k: sampled.append(
        len(batches)) or real(m, t, batches, *a, **k))
    assert sample(model, tokenizer, prompts, **kwargs, journal=journal) == whole
    assert sampled == [1]  # only the batch the journal lacked
    other = sample(model, tokenizer, prompts, **kwargs, journal=journal, engine="generate")
    assert other != whole and len(other.tokens) == len(whole.tokens)
    # a journal written before there was a choice of engine (no "engine" field) is generate's
    old = [json.loads(x) for x in journal.read_text().splitlines() if '"generate"' in x]
    journal.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "engine"}) + "\n" for row in old))
    monkeypatch.setattr(lmpolicy, "generate", None)  # nothing left to sample: all read back
    assert sample(model, tokenizer, prompts, **kwargs, journal=journal, engine="generate") == other
    with pytest.raises(ValueError, match="engine='beam'"):
        sample(model, tokenizer, prompts, **kwargs, engine="beam")
