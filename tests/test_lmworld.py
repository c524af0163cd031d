"""The real-model world (adadpo.bench.worlds.smollm2): the tasks' truth, the judge on it, sampling and exact scoring under a
causal LM, building and caching the world, and which blocks are trained.

Runs on a tiny stand-in for SmolLM2 (tests/lmworld_fixtures.py), never the real model.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gguf")

import lmworld_fixtures
from lmworld_fixtures import LAYERS, stand_in_truth, tiny_config, tiny_truth

from adadpo.bench.judge import judge_prob
from adadpo.bench.worlds.smollm2 import data as lmdata
from adadpo.bench.worlds.smollm2 import policy as lmpolicy
from adadpo.bench.worlds.smollm2.data import LMWorldConfig, build_world
from adadpo.bench.worlds.smollm2.policy import batch_seed, chat_prompt, never_emitted, response_logps, sample
from adadpo.bench.worlds.smollm2.run import freeze_below
from adadpo.bench.worlds.smollm2.tasks import (
    CAPITALS,
    COLORS_OF,
    KINDS,
    Task,
    make_tasks,
    quality,
    words,
)

tiny_model = lmworld_fixtures.tiny_model  # the session's stand-in model (a fixture)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def world(tiny_model, tmp_path_factory):
    """A tiny world in its own cache directory, for the tests that only read it."""
    with stand_in_truth():  # the real truth scores every tiny answer 0: no held-out pair would be truly better
        return build_world(tiny_config(tiny_model),
                           tmp_path_factory.mktemp("lmworld-cache"))


# ------------------------------------------------------------------------------------------------ tasks


def test_make_tasks_is_deterministic_disjoint_and_covers_every_kind():
    train, held = make_tasks(28, 14, seed=0)
    assert (train, held) == make_tasks(28, 14, seed=0)
    assert (train, held) != make_tasks(28, 14, seed=1)
    assert len(train) == 28 and len(held) == 14
    assert not {t.key() for t in train} & {t.key() for t in held}  # no training task asks what a held-out one asks
    assert len({t.key() for t in held}) == len(held)  # held-out tasks are distinct
    assert {t.kind for t in train} == {t.kind for t in held} == set(KINDS)
    assert [t.kind for t in held] == [KINDS[i % len(KINDS)] for i in range(14)]  # kinds in turn
    assert all(t.text and t.text[0].isupper() for t in train + held)
    # a subset of kinds gives only those kinds
    train, held = make_tasks(6, 4, seed=3, kinds=("capital", "arithmetic"))
    assert {t.kind for t in train + held} == {"capital", "arithmetic"}


def test_make_tasks_errors():
    # 40 things have a color: 50 distinct held-out color questions cannot exist
    with pytest.raises(ValueError, match="n_eval=50"):
        make_tasks(1, 50, seed=0, kinds=("color",))
    # all 40 held out: none is left for training
    with pytest.raises(ValueError, match="none is left for training"):
        make_tasks(1, len(COLORS_OF), seed=0, kinds=("color",))
    with pytest.raises(ValueError, match="poem"):
        make_tasks(2, 2, seed=0, kinds=("capital", "poem"))
    with pytest.raises(ValueError, match="non-empty"):
        make_tasks(2, 2, seed=0, kinds=())
    with pytest.raises(ValueError, match="poem"):
        quality(Task("poem", "Write a poem.", ()), "roses")


def _task(kind: str, *params: str) -> Task:
    return Task(kind, "(the wording does not matter to the truth)", tuple(params))


@pytest.mark.parametrize(("task", "answer", "q"), [
    # capital: the right one alone 1, with a wrong capital 0.5, wrong or none 0
    (_task("capital", "France"), "Paris.", 1.0),
    (_task("capital", "France"), "The capital of France is Paris, a city on the Seine.", 1.0),
    (_task("capital", "France"), "paris", 1.0),  # case-insensitive
    (_task("capital", "France"), "It is Paris, or Berlin.", 0.5),
    (_task("capital", "France"), "It is Paris, not Berlin.", 1.0),  # a denied capital is no second answer (v4)
    (_task("capital", "France"), "Berlin.", 0.0),
    (_task("capital", "France"), "France is a country in Europe.", 0.0),
    (_task("capital", "France"), "Parisian food is great.", 0.0),  # whole words only
    (_task("capital", "Mexico"), "Mexico City.", 1.0),  # phrases
    (_task("capital", "Mexico"), "Mexico.", 0.0),
    # arithmetic: the result with nothing but the operands 1, other numbers too 0.5, no result 0
    (_task("arithmetic", "7", "+", "5"), "12", 1.0),
    (_task("arithmetic", "7", "+", "5"), "7 + 5 = 12.", 1.0),
    (_task("arithmetic", "7", "+", "5"), "It is 12, or maybe 13.", 0.5),
    (_task("arithmetic", "7", "+", "5"), "12 apples for 3 friends", 0.5),
    (_task("arithmetic", "7", "+", "5"), "13", 0.0),
    (_task("arithmetic", "7", "+", "5"), "twelve", 1.0),  # number words count (v4)
    (_task("arithmetic", "7", "+", "5"), "12.0", 1.0),
    (_task("arithmetic", "7", "+", "5"), "12.5", 0.0),
    (_task("arithmetic", "15", "-", "3"), "15 - 3 = 12", 1.0),
    (_task("arithmetic", "15", "-", "3"), "-12", 0.0),
    (_task("arithmetic", "4", "x", "3"), "4 times 3 is 12.", 1.0),
    (_task("arithmetic", "4", "x", "3"), "7", 0.0),
    # list: min(v, n) / n * n / max(v, n) for v distinct valid items
    (_task("list", "fruits", "3"), "Apple, banana, mango.", 1.0),
    (_task("list", "fruits", "3"), "1. Apples\n2. Bananas\n3. Peaches", 1.0),  # plural s / es
    (_task("list", "fruits", "3"), "apple, banana", 2 / 3),
    (_task("list", "fruits", "3"), "apple, banana, carrot", 2 / 3),  # a vegetable is not a fruit
    (_task("list", "fruits", "3"), "apple, banana, mango, kiwi, pear, plum", 0.5),
    (_task("list", "fruits", "2"), "apple, banana, mango", 2 / 3),
    (_task("list", "fruits", "3"), "apple apple apple", 1 / 3),  # distinct items
    (_task("list", "fruits", "3"), "dog, cat, cow", 0.0),
    (_task("list", "musical instruments", "2"), "Piano and guitar.", 1.0),
    # color: the right color alone 1, with another 0.5, else 0
    (_task("color", "grass"), "Grass is green.", 1.0),
    (_task("color", "a banana"), "Yellow when ripe, green before.", 0.5),
    (_task("color", "grass"), "Blue.", 0.0),
    (_task("color", "grass"), "It depends on the season.", 0.0),
    # include: share of the required words used, over the number of sentences
    (_task("include", "the sea", "wave", "salt"), "Each wave tastes of salt.", 1.0),
    (_task("include", "the sea", "wave", "salt"), "The waves carry salt", 1.0),  # plural, unfinished sentence
    (_task("include", "the sea", "wave", "salt"), "A wave broke on the shore.", 0.5),
    (_task("include", "the sea", "wave", "salt"), "A wave came. Salt was left.", 0.5),
    (_task("include", "the sea", "wave", "salt"), "Waves! Salt. Sand?", 1 / 3),
    (_task("include", "the sea", "wave", "salt"), "The sea is blue.", 0.0),
    # limit: on topic, then max(0, 1 - (words - k) / k) past the limit k
    (_task("limit", "sleeping better", "8"), "Go to bed at the same time.", 1.0),  # 7 words
    (_task("limit", "sleeping better", "8"), "Keep your bedroom dark and quiet every night.", 1.0),  # 8 words
    (_task("limit", "sleeping better", "8"),
     "Keep your bedroom dark and quiet every night so you can rest.", 0.5),  # 12 words
    (_task("limit", "sleeping better", "8"), " ".join(["sleep"] * 16), 0.0),
    (_task("limit", "sleeping better", "8"), " ".join(["sleep"] * 30), 0.0),
    (_task("limit", "sleeping better", "8"), "Drink more water.", 0.0),  # off topic
    (_task("limit", "saving money", "10"), "Set a budget.", 1.0),
    # name: any listed item of the category
    (_task("name", "vegetables", "0"), "I like carrots; they are crunchy.", 1.0),
    (_task("name", "animals", "2"), "A fox is clever.", 1.0),
    (_task("name", "animals", "2"), "Foxes are clever.", 1.0),  # plural es
    (_task("name", "vegetables", "0"), "Apples are sweet.", 0.0),
])
def test_quality_on_hand_written_answers(task, answer, q):
    assert quality(task, answer) == pytest.approx(q)


@pytest.mark.parametrize("kind", KINDS)
def test_quality_of_an_empty_answer_is_zero_for_every_kind(kind):
    task = make_tasks(0, 1, seed=0, kinds=(kind,))[1][0]
    assert quality(task, "") == quality(task, "  \n ") == 0.0


def test_quality_of_generated_tasks_accepts_the_right_answer():
    """The truth of every generated capital/arithmetic/color task is reachable: the bare right answer scores 1."""
    train, held = make_tasks(60, 21, seed=5, kinds=("capital", "arithmetic", "color"))
    for t in train + held:
        if t.kind == "capital":
            right = CAPITALS[t.params[0]]
        elif t.kind == "color":
            right = COLORS_OF[t.params[0]]
        else:
            a, op, b = int(t.params[0]), t.params[1], int(t.params[2])
            right = str({"+": a + b, "-": a - b, "x": a * b}[op])
            assert str(a) in t.text and str(b) in t.text
        assert quality(t, f"{right}.") == 1.0, t


def test_words_counts_words_and_numbers():
    assert words("It's 12 o'clock, isn't it?") == ["It's", "12", "o'clock", "isn't", "it"]
    assert words("") == [] and words(" ... ") == []


# ------------------------------------------------------------------------------------------------ the judge


def test_judge_on_this_world_with_and_without_length_bias():
    task = _task("capital", "France")
    short, long = "Paris.", "The capital of France is Paris, a lovely old city on the river Seine."
    q_s, q_l = quality(task, short), quality(task, long)
    n_s, n_l = len(words(short)), len(words(long))
    assert q_s == q_l == 1.0 and n_l - n_s == 13
    # eta = 0: equal quality is a coin flip whatever the lengths, both ways round
    unbiased = LMWorldConfig(eta=0.0)
    assert judge_prob(unbiased, q_l, q_s, n_l, n_s) == 0.5 == judge_prob(unbiased, q_s, q_l, n_s, n_l)
    assert judge_prob(LMWorldConfig(), q_l, q_s, n_l, n_s, eta=0.0) == 0.5  # the TQ judge of evaluate_policy
    # eta > 0: the longer answer wins, more so with more bias, as the formula says
    p = [float(judge_prob(LMWorldConfig(eta=eta), q_l, q_s, n_l, n_s)) for eta in (0.5, 1.0, 2.0)]
    assert 0.5 < p[0] < p[1] < p[2]
    assert p[1] == pytest.approx(1 / (1 + math.exp(-1.0 * 13 / 20.0)))
    # quality still dominates at the default tau: a wrong long answer loses to a right short one
    wrong = "The capital of France is Berlin, a lovely old city on the river Spree, they say."
    assert float(judge_prob(LMWorldConfig(), quality(task, wrong), q_s, len(words(wrong)), n_s)) < 0.5


def test_best_and_worst_of_a_world_prompt_follow_the_judge():
    """The world's pair picker (Gumbel-max on the judge's utilities): the best is drawn with probability
    softmax(u), u = tau q + eta words / L; the lower an answer's utility, the likelier it is the worst; with two
    answers the chosen one beats the other with the judge's probability."""
    config = LMWorldConfig(tau=2.0, eta=1.0, length_scale=4.0)
    task = _task("arithmetic", "7", "+", "5")
    texts = ["12", "The answer is 12 because 7 plus 5 makes 12.", "13", "I think it is 13 or maybe 14."]
    u = np.array([config.tau * quality(task, t) + config.eta * len(words(t)) / config.length_scale for t in texts])
    rng = np.random.default_rng(0)
    picks = np.array([lmdata._best_worst(config, task, texts, rng) for _ in range(6000)])
    best = np.bincount(picks[:, 0], minlength=4) / len(picks)
    worst = np.bincount(picks[:, 1], minlength=4) / len(picks)
    np.testing.assert_allclose(best, np.exp(u) / np.exp(u).sum(), atol=0.02)
    assert (picks[:, 0] != picks[:, 1]).all()
    assert list(np.argsort(worst)) == list(np.argsort(-u))  # u = 2.25, 4.5, 0.25, 1.75
    pair = np.array([lmdata._best_worst(config, task, texts[1:3], rng) for _ in range(4000)])
    p = float(judge_prob(config, quality(task, texts[1]), quality(task, texts[2]), len(words(texts[1])),
                         len(words(texts[2]))))
    assert np.mean(pair[:, 0] == 0) == pytest.approx(p, abs=0.025) and (pair.sum(1) == 1).all()


# ------------------------------------------------------------------------------------------------ sampling

EOS_BIAS, NEVER_BIAS, MAX_NEW = 4.0, 8.0, 5
USERS = ("What color is grass?", "Hello there.", "List two fruits.", "What is 3 + 4?")


@pytest.fixture(scope="module")
def biased(tiny_model, tokenizer):
    """The tiny model with a bias on its head: EOS likely enough that some answers end and some hit the limit,
    and the never-emitted special tokens the likeliest of all, were they not suppressed."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    head.weight = model.lm_head.weight
    with torch.no_grad():
        head.bias.zero_()
        head.bias[never_emitted(tokenizer)] = NEVER_BIAS
        head.bias[tokenizer.eos_token_id] = EOS_BIAS
    model.lm_head = head
    return model


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return [chat_prompt(tokenizer, "Be brief.", u) for u in USERS]


def test_chat_prompt_is_chatml_with_a_generation_prompt(tokenizer):
    text = chat_prompt(tokenizer, "Be brief.", "Hi?")
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    assert chat_prompt(tokenizer, "", "Hi?").startswith("<|im_start|>system\nYou are a helpful AI assistant")
    assert never_emitted(tokenizer) == [0, 1] and tokenizer.eos_token_id == 2  # <|endoftext|>, <|im_start|>


def test_sample_counts_ends_and_suppression(biased, tokenizer, prompts):
    n = 4
    out = sample(biased, tokenizer, prompts, n=n, max_new_tokens=MAX_NEW, temperature=0.7, seed=0, batch_size=6)
    assert len(out.tokens) == len(out.texts) == len(out.ended) == n * len(prompts)
    eos, never = tokenizer.eos_token_id, set(never_emitted(tokenizer))
    for ids, text, ended in zip(out.tokens, out.texts, out.ended):
        assert 1 <= len(ids) <= MAX_NEW  # never empty: EOS is not allowed first
        assert not (set(ids) & never) and eos not in ids
        assert ended == (len(ids) < MAX_NEW)  # cut at the limit exactly when it used every token
        assert text == tokenizer.decode(ids, skip_special_tokens=True).strip()
    assert any(out.ended) and not all(out.ended)  # both cases occur, so the check above bites
    again = sample(biased, tokenizer, prompts, n=n, max_new_tokens=MAX_NEW, temperature=0.7, seed=0, batch_size=6)
    assert again.tokens == out.tokens  # deterministic in the seed
    # without the suppression, the special tokens would dominate: the bias is real
    with torch.no_grad():
        enc = tokenizer(prompts[:1], return_tensors="pt", add_special_tokens=False)
        probs = biased(**enc).logits[0, -1].softmax(-1)
    assert probs[sorted(never)].sum() > 0.5


@pytest.mark.parametrize("batch_size", [4, 5, 64])
def test_shared_prompt_prefill_samples_what_generate_alone_samples(biased, tokenizer, prompts, monkeypatch,
                                                                   batch_size):
    """Several answers per prompt: the prompts' cache is computed once per distinct prompt (in batches that
    split a prompt's answers too) and the sampled answers are those of generate's own prefill, token for
    token, with prompts of different lengths (left padding)."""
    import adadpo.bench.sampling as sampling

    assert len({len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts}) > 1
    kwargs = dict(n=3, max_new_tokens=6, temperature=1.0, seed=7, batch_size=batch_size, engine="generate")
    calls = []
    shared = sampling._shared_prompts
    monkeypatch.setattr(sampling, "_shared_prompts", lambda *a: calls.append(shared(*a)) or calls[-1])
    with_sharing = sample(biased, tokenizer, prompts, **kwargs)
    assert calls and all(calls)  # every batch repeats a prompt here
    monkeypatch.setattr(sampling, "_shared_prompts", lambda *a: {})
    assert sample(biased, tokenizer, prompts, **kwargs) == with_sharing
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert shared(biased, prompts, enc) == {}  # nothing repeats: generate's own prefill


def test_sample_is_prompt_major(tiny_model, tokenizer, prompts):
    """Near-greedy sampling (temperature 0.01) makes each prompt's answers its greedy answer: answers
    ``i * n .. i * n + n - 1`` belong to prompt ``i``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    greedy = []
    for p in prompts:
        enc = tokenizer([p], return_tensors="pt", add_special_tokens=False)
        ids = model.generate(**enc, do_sample=False, max_new_tokens=3, min_new_tokens=3, pad_token_id=2,
                             suppress_tokens=never_emitted(tokenizer))[0, enc["input_ids"].shape[1]:].tolist()
        greedy.append(ids)
    assert len({tuple(g) for g in greedy}) == len(prompts)  # the prompts are told apart
    n = 3
    out = sample(model, tokenizer, prompts, n=n, max_new_tokens=3, temperature=0.01, seed=0, batch_size=5)
    assert out.tokens == [g for g in greedy for _ in range(n)]


def test_response_logps_with_ended_is_the_sampling_process_of_generate(biased, tokenizer, prompts):
    """Scored with ``ended``, an answer gets exactly the log-probability that ``generate``'s processed scores
    (temperature, suppressed tokens, min_new_tokens) gave the tokens it sampled."""
    n, temperature, seed = 3, 0.7, 11
    out = sample(biased, tokenizer, prompts, n=n, max_new_tokens=MAX_NEW, temperature=temperature, seed=seed,
                 engine="generate")
    flat = [p for p in prompts for _ in range(n)]
    # the same call as `sample` (one batch), with the scores kept
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    enc = tokenizer(flat, return_tensors="pt", padding=True, add_special_tokens=False)
    tokenizer.padding_side = side
    eos = tokenizer.eos_token_id
    torch.manual_seed(batch_seed(seed, 0))  # the one batch of the call above
    with torch.no_grad():
        gen = biased.generate(**enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0, min_new_tokens=1,
                              max_new_tokens=MAX_NEW, pad_token_id=eos, eos_token_id=eos,
                              suppress_tokens=never_emitted(tokenizer), output_scores=True,
                              return_dict_in_generate=True)
    new = gen.sequences[:, enc["input_ids"].shape[1]:]
    steps = torch.stack(gen.scores, 1).float().log_softmax(-1)  # [N, steps, V]
    expected = []
    for i, (ids, ended) in enumerate(zip(out.tokens, out.ended)):
        assert new[i, : len(ids)].tolist() == ids  # generate drew the same tokens: same process, same seed
        scored = len(ids) + int(ended)  # EOS counts where the answer ended
        expected.append(steps[i, torch.arange(scored), new[i, :scored]].sum().item())
    assert all(math.isfinite(e) for e in expected)
    got = response_logps(biased, tokenizer, flat, out.tokens, out.ended, temperature=temperature, batch_size=5)
    assert got.dtype == torch.float32 and got.shape == (len(flat),)
    np.testing.assert_allclose(got.numpy(), np.array(expected), rtol=0, atol=1e-4)
    # the temperature matters: scoring at another one gives other numbers
    assert not torch.allclose(got, response_logps(biased, tokenizer, flat, out.tokens, out.ended, temperature=1.0))


def test_response_logps_without_ended_is_the_plain_distribution_with_eos(biased, tokenizer, prompts):
    answers = [[62, 298], [335], [34, 155, 43, 43, 43], [250, 283, 283, 191], [128, 277, 327]]
    texts = [prompts[i % len(prompts)] for i in range(len(answers))]
    eos = tokenizer.eos_token_id
    expected = []
    with torch.no_grad():
        for text, ans in zip(texts, answers):  # one at a time: no padding
            p = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([p + ans + [eos]])
            logp = biased(input_ids=ids).logits[0].double().log_softmax(-1)
            expected.append(sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(ans + [eos])))
    got = response_logps(biased, tokenizer, texts, answers, batch_size=2)
    np.testing.assert_allclose(got.numpy(), np.array(expected), rtol=0, atol=1e-4)
    # temperature is ignored without `ended`; with it, the same answers score differently
    assert torch.equal(got, response_logps(biased, tokenizer, texts, answers, temperature=0.5, batch_size=2))
    assert not torch.allclose(got, response_logps(biased, tokenizer, texts, answers, [True] * len(answers), 1.0))
    assert response_logps(biased, tokenizer, [], []).shape == (0,)


# ------------------------------------------------------------------------------------------------ the world


def test_world_files_dataset_and_pairs(world, tokenizer):
    from datasets import load_from_disk

    cfg, k, e = world.config, world.config.samples_per_prompt, world.config.eval_samples
    assert world.path.name == f"lmworld-{cfg.key()}"
    for name in ("world.json", "eval.json", "train_pairs.jsonl", "train_dataset"):
        assert (world.path / name).exists(), name
    meta = json.loads((world.path / "world.json").read_text())
    assert meta["config"]["n_train_prompts"] == cfg.n_train_prompts and meta["model_path"] == world.model_path
    # the training pairs: TRL's conversational format, one per training prompt whose best and worst differ
    data = load_from_disk(str(world.train_dataset_path))
    assert data.column_names == ["prompt", "chosen", "rejected"]
    assert 0 < len(data) == len(world.train_pairs) <= cfg.n_train_prompts
    train_tasks, eval_tasks = lmdata.make_tasks(cfg.n_train_prompts, cfg.n_eval_prompts, cfg.seed, cfg.kinds)
    texts = {t.text for t in train_tasks}
    for row, pair in zip(data, world.train_pairs):
        assert row["prompt"] == pair["prompt"] == lmpolicy.messages(cfg.system, row["prompt"][-1]["content"])
        assert row["prompt"][-1]["content"] in texts
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert chosen != rejected
        assert (chosen, rejected) == (pair["chosen"][0]["content"], pair["rejected"][0]["content"])
        task = next(t for t in train_tasks if t.text == row["prompt"][1]["content"])
        assert pair["kind"] == task.kind
        assert (pair["q_chosen"], pair["q_rejected"]) == (tiny_truth(task, chosen), tiny_truth(task, rejected))
        assert (pair["words_chosen"], pair["words_rejected"]) == (len(words(chosen)), len(words(rejected)))
    # held out: the same tasks as make_tasks gives, eval_samples reference answers each, pairs with ref log-probs
    assert world.eval_tasks == eval_tasks
    ref = world.eval_reference
    assert len(ref["tokens"]) == len(ref["texts"]) == len(ref["ended"]) == cfg.n_eval_prompts * e
    assert all(1 <= len(t) <= cfg.max_new_tokens for t in ref["tokens"])
    assert 0 < len(world.eval_pairs) <= cfg.n_eval_prompts * cfg.eval_pairs_per_prompt
    model = world.load_reference()
    prompts = [world.prompt_text(tokenizer, world.eval_tasks[p["prompt"]]) for p in world.eval_pairs]
    for side in ("chosen", "rejected"):
        logps = response_logps(model, tokenizer, prompts, [p[side] for p in world.eval_pairs])
        np.testing.assert_allclose(logps.numpy(), [p[f"ref_{side}_logps"] for p in world.eval_pairs], atol=1e-4)
    for p in world.eval_pairs:  # held-out pairs: truly better against truly worse, both of one prompt's samples
        assert p["chosen"] != p["rejected"] and p["chosen_text"] != p["rejected_text"]
        assert p["chosen_text"] == tokenizer.decode(p["chosen"], skip_special_tokens=True).strip()
        task = world.eval_tasks[p["prompt"]]
        assert p["q_chosen"] == tiny_truth(task, p["chosen_text"])
        assert p["q_rejected"] == tiny_truth(task, p["rejected_text"]) < p["q_chosen"]
    assert {"better", "tied", "worse"} == set(world.stats["truth_groups"])
    assert sum(g["pairs"] for g in world.stats["truth_groups"].values()) == len(world.train_pairs)
    # the reference answers are the first eval_samples of each held-out prompt's samples (same seed, same draw)
    held = sample(model, tokenizer, [world.prompt_text(tokenizer, t) for t in world.eval_tasks], n=k,
                  max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed + 4)
    first = [held.tokens[i * k + j] for i in range(cfg.n_eval_prompts) for j in range(e)]
    assert ref["tokens"] == first
    assert world.stats["samples"] == (cfg.n_train_prompts + cfg.n_eval_prompts) * k
    assert world.stats["pairs"] == len(world.train_pairs) and set(world.stats["by_kind"]) == set(cfg.kinds)


def test_world_pairs_are_the_judges_best_and_worst(tiny_model, tmp_path):
    """With a judge that only sees length (the tiny model's answers are all wrong, and eta / length_scale is
    huge), each pair is the longest and the shortest of its prompt's samples."""
    config = tiny_config(tiny_model, eta=100.0, length_scale=1.0)
    world = build_world(config, tmp_path)
    assert world.stats["quality"] == 0.0  # what makes the judge's choice a matter of length here
    tokenizer, k = world.load_tokenizer(), config.samples_per_prompt
    tasks = lmdata.make_tasks(config.n_train_prompts, config.n_eval_prompts, config.seed, config.kinds)[0]
    train = sample(world.load_reference(), tokenizer, [world.prompt_text(tokenizer, t) for t in tasks], n=k,
                   max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=config.seed + 3)
    pairs, strict = list(world.train_pairs), 0
    for i, task in enumerate(tasks):  # pairs come in prompt order, minus prompts whose best and worst are equal
        texts = train.texts[i * k : (i + 1) * k]
        n = [len(words(t)) for t in texts]
        if max(n) > min(n):  # the judge's pick is forced: a pair must be there
            strict += 1
            pair = pairs.pop(0)
            assert pair["prompt"][-1]["content"] == task.text
            assert (pair["words_chosen"], pair["words_rejected"]) == (max(n), min(n))
            assert pair["chosen"][0]["content"] in texts and pair["rejected"][0]["content"] in texts
        elif pairs and pairs[0]["prompt"][-1]["content"] == task.text and pairs[0]["chosen"][0]["content"] in texts:
            pairs.pop(0)  # equally long answers: any two different ones
    assert pairs == [] and strict > 0
    assert world.stats["chosen_longer"] > 0.5 and world.stats["words_chosen"] > world.stats["words_rejected"]


def test_a_prompt_whose_best_and_worst_are_the_same_answer_makes_no_pair(tiny_model, tmp_path):
    """At a low temperature the tiny model often repeats itself; such prompts are left out, never paired with
    themselves."""
    world = build_world(tiny_config(tiny_model, temperature=0.2), tmp_path)
    cfg = world.config
    assert 0 < len(world.train_pairs) < cfg.n_train_prompts  # some prompts were left out
    assert all(p["chosen"][0]["content"] != p["rejected"][0]["content"] for p in world.train_pairs)
    assert all(p["chosen_text"] != p["rejected_text"] for p in world.eval_pairs)
    assert len(world.eval_reference["texts"]) == cfg.n_eval_prompts * cfg.eval_samples  # the reference keeps all


@pytest.mark.parametrize(("q", "texts", "n", "expected"), [
    ([0.0, 1.0, 0.7, 0.5], "abcd", 2, [(1, 0), (2, 3)]),  # best vs worst, then second best vs second worst
    ([0.0, 1.0, 0.7, 0.5], "abcd", 1, [(1, 0)]),
    ([0.5, 0.5, 0.5, 1.0], "abcd", 2, [(3, 2)]),  # a tie stops the pairing; among equals the later sample is worst
    ([0.3, 0.3, 0.3], "abc", 1, []),  # all tied: no truly better answer
    ([1.0, 0.0], "aa", 1, []),  # the same text cannot be a pair
])
def test_truth_pairs_are_strictly_better_and_disjoint(q, texts, n, expected):
    pairs = lmdata.truth_pairs(q, list(texts), n)
    assert pairs == expected
    assert all(q[a] > q[b] for a, b in pairs) and len({i for p in pairs for i in p}) == 2 * len(pairs)


def test_world_is_cached_atomically(tiny_model, tmp_path, monkeypatch):
    config = tiny_config(tiny_model)
    first = build_world(config, tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".lmworld-")] == []  # no temp dir left
    monkeypatch.setattr(lmdata, "_build", lambda *a, **k: pytest.fail("rebuilt a cached world"))
    again = build_world(config, tmp_path)
    assert again.path == first.path and again.train_pairs == first.train_pairs
    assert again.eval_pairs == first.eval_pairs and again.eval_reference == first.eval_reference
    # ADADPO_CACHE is the default cache directory
    monkeypatch.setenv("ADADPO_CACHE", str(tmp_path))
    assert build_world(config).path == first.path


def test_a_shipped_snapshot_builds_the_same_world_without_sampling(world, tmp_path, monkeypatch):
    from datasets import load_from_disk

    shipped = tmp_path / "worlds"
    dest = lmdata.save_snapshot(world, shipped)
    assert sorted(p.name for p in dest.iterdir()) == sorted(lmdata.SNAPSHOT_FILES)
    assert json.loads((dest / "world.json").read_text())["model_path"] == world.config.model  # no local path
    monkeypatch.setattr(lmdata, "SHIPPED", shipped)
    monkeypatch.setattr(lmdata, "_build", lambda *a, **k: pytest.fail("sampled a shipped world"))
    again = build_world(world.config, tmp_path / "cache")
    assert again.path != world.path and again.model_path == world.model_path
    assert again.train_pairs == world.train_pairs and again.eval_pairs == world.eval_pairs
    assert again.eval_reference == world.eval_reference and again.eval_tasks == world.eval_tasks
    assert again.stats == world.stats
    assert load_from_disk(str(again.train_dataset_path)).to_list() == load_from_disk(
        str(world.train_dataset_path)).to_list()


def test_a_killed_build_resumes_its_sampling_from_the_journal(tiny_model, tmp_path, monkeypatch):
    """Batches already sampled are read back, not sampled again, and the world is the same."""
    config = tiny_config(tiny_model)
    first = build_world(config, tmp_path / "a")
    journal = tmp_path / "b" / f".lmworld-{config.key()}.samples"
    real_sample, real_append = lmpolicy.sample, lmpolicy._append_journal

    def killed_in_held_out_sampling(*args, **kwargs):
        if Path(kwargs["journal"]).name == "held_out.jsonl":
            raise KeyboardInterrupt
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(lmpolicy, "sample", killed_in_held_out_sampling)
    with pytest.raises(KeyboardInterrupt):
        build_world(config, tmp_path / "b")
    assert (journal / "train.jsonl").exists() and not (tmp_path / "b" / f"lmworld-{config.key()}").exists()
    monkeypatch.setattr(lmpolicy, "sample", real_sample)
    appended = []
    monkeypatch.setattr(lmpolicy, "_append_journal",
                        lambda path, row: (appended.append(Path(path).name), real_append(path, row)))
    again = build_world(config, tmp_path / "b")
    assert appended and set(appended) == {"held_out.jsonl"}  # the training answers came from the journal
    assert again.train_pairs == first.train_pairs and again.eval_reference == first.eval_reference
    assert not journal.exists()  # removed once the world is built


def test_a_failed_build_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    def broken(config, out, model_path, progress, journal, samples_from=None):
        (out / "train_pairs.jsonl").write_text("half")
        raise RuntimeError("killed")

    monkeypatch.setattr(lmdata, "_build", broken)
    with pytest.raises(RuntimeError, match="killed"):
        build_world(tiny_config(tiny_model), tmp_path)
    # no world and no half-built directory; only the samples' journal stays, for the next build to resume
    assert [p.name for p in tmp_path.iterdir() if "lmworld-" in p.name and not p.name.endswith(".samples")] == []


def test_build_reports_progress(tiny_model, tmp_path):
    seen = []
    build_world(tiny_config(tiny_model), tmp_path, lambda s, i, n: seen.append((s, i, n)))
    stages = list(dict.fromkeys(s for s, _, _ in seen))
    assert stages == ["preparing the model", "sampling training answers", "sampling held-out answers",
                      "scoring held-out pairs"]
    assert all(0 <= i <= n for _, i, n in seen) and seen[-1] == ("scoring held-out pairs", 1, 1)


@pytest.mark.parametrize(("fields", "name"), [
    ({"samples_per_prompt": 1}, "samples_per_prompt=1"),
    ({"samples_per_prompt": 3, "eval_samples": 4}, "eval_samples=4"),
    ({"eval_samples": 0}, "eval_samples=0"),
    ({"kinds": ("capital", "haiku")}, "haiku"),
    ({"kinds": ()}, "kinds"),
    ({"n_eval_prompts": 0}, "n_eval_prompts=0"),
    ({"max_new_tokens": 0}, "max_new_tokens=0"),
    ({"temperature": 0.0}, "temperature=0.0"),
    ({"eta": -1.0}, "eta=-1.0"),
])
def test_config_errors_name_the_field(fields, name):
    with pytest.raises(ValueError, match=name):
        LMWorldConfig(**fields)


def test_config_key_and_kinds():
    assert LMWorldConfig().key() == LMWorldConfig().key() != LMWorldConfig(eta=2.0).key()
    assert LMWorldConfig(kinds=["capital"]).kinds == ("capital",)  # lists from YAML become tuples (hashable)
    assert LMWorldConfig(kinds=["capital"]).key() == LMWorldConfig(kinds=("capital",)).key()


def test_evaluate_policy_against_itself_and_an_early_stopping_policy(world, tokenizer, biased):
    from adadpo.bench.worlds.smollm2.evaluate import evaluate_policy

    reference = world.load_reference()
    cfg, e = world.config, world.config.eval_samples
    same = evaluate_policy(world, reference, reference, tokenizer, seed=0)
    assert same["kl"] == 0.0  # the same model scores every answer the same
    assert abs(same["delta_chosen"]) < 1e-4 and abs(same["delta_rejected"]) < 1e-4 and abs(same["reward_margin"]) < 1e-4
    tasks = [t for t in world.eval_tasks for _ in range(e)]
    ref_texts = world.eval_reference["texts"]
    assert same["ref_length"] == pytest.approx(np.mean([len(words(t)) for t in ref_texts]))
    assert same["ref_quality"] == pytest.approx(np.mean([quality(t, a) for t, a in zip(tasks, ref_texts)]))
    for key in ("wr", "lc", "tq", "ended"):
        assert 0.0 <= same[key] <= 1.0, key
    assert [x["prompt"] for x in same["examples"]] == [t.text for t in world.eval_tasks[:6]]
    assert [x["reference"] for x in same["examples"]] == ref_texts[: 6 * e : e]
    # the policy's answers are sampled with the world's process at seed 10_000 + seed
    answers = sample(reference, tokenizer, [world.prompt_text(tokenizer, t) for t in world.eval_tasks], n=e,
                     max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=10_000)
    assert same["length"] == pytest.approx(np.mean([len(words(a)) for a in answers.texts]))
    assert [x["answer"] for x in same["examples"]] == answers.texts[: 6 * e : e]
    # a policy that likes EOS (the biased head) answers shorter, ends more often and is far from the reference
    early = evaluate_policy(world, biased, reference, tokenizer, seed=0)
    assert early["ended"] > same["ended"] and early["length"] <= same["length"]
    assert early["kl"] > 0.2  # estimated on the first answer to each of the 7 held-out prompts
    for row in (same, early):  # the evaluation's profile: each part's wall time
        probed = {"probe"} if "cap_probe" in row else set()  # answers that run into the cap are probed
        assert set(row["eval_seconds"]) == {"sample", "kl", "pairs", *probed} and min(row["eval_seconds"].values()) >= 0
        assert ("cap_probe" in row) == (row["ended"] < 0.95)
    assert early["eval_seconds"]["kl"] > same["eval_seconds"]["kl"]  # the reference scores no KL against itself


# ------------------------------------------------------------------------------------------------ what is trained


def test_freeze_below_trains_only_the_top_blocks_and_the_final_norm(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert len(model.model.layers) == LAYERS
    for k in (1, 2):
        model.requires_grad_(True)
        count = freeze_below(model, k)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        top = tuple(f"model.layers.{i}." for i in range(LAYERS - k, LAYERS))
        expected = {n for n, _ in model.named_parameters() if n.startswith(top)} | {"model.norm.weight"}
        assert trainable == expected
        assert count == sum(p.numel() for n, p in model.named_parameters() if n in expected)
        assert not model.model.embed_tokens.weight.requires_grad and not model.lm_head.weight.requires_grad
    total = sum(p.numel() for p in model.parameters())
    model.requires_grad_(True)
    assert freeze_below(model, 0) == total and all(p.requires_grad for p in model.parameters())
    assert freeze_below(model, LAYERS) < total  # every block, but not the (tied) embedding
    with pytest.raises(ValueError, match=f"train_layers={LAYERS + 1}: the model has only {LAYERS} blocks"):
        freeze_below(model, LAYERS + 1)


def test_sampling_helpers_keep_the_tokenizer_padding_side(tokenizer, biased, prompts):
    tokenizer.padding_side = "right"
    try:
        sample(biased, tokenizer, prompts[:1], n=1, max_new_tokens=2, temperature=1.0, seed=0)
        assert tokenizer.padding_side == "right"
    finally:
        tokenizer.padding_side = "left"


def test_random_tasks_truth_is_in_range():
    rng = random.Random(0)
    train, held = make_tasks(70, 14, seed=2)
    for t in train + held:
        answer = " ".join(rng.choice(["Paris", "12", "apple", "green", "wave", "sleep", "carrot", "the", "."])
                          for _ in range(rng.randint(1, 12)))
        assert 0.0 <= quality(t, answer) <= 1.0
