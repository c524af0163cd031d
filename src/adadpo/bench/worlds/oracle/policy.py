"""The world's language models: a word-level tokenizer, a tiny Llama, SFT, sampling and scoring.

All real ``transformers`` objects (``PreTrainedTokenizerFast``, ``LlamaForCausalLM``, ``generate``), built in
process so nothing is downloaded. Log-probs go through :func:`adadpo.sequence_logps`, the public API.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from adadpo import sequence_logps
from adadpo.bench.sampling import answer_batch, cut_at_eos, generate, score
from adadpo.bench.worlds.oracle.world import PROMPT_END, Prompt, WorldConfig, demonstration

SPECIALS = ["<pad>", "</s>", "<unk>"]


def make_tokenizer(config: WorldConfig) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: one id per word, ``</s>`` ends a response, ``<pad>`` pads on the left."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate([*SPECIALS, PROMPT_END, *config.words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   padding_side="left", model_max_length=64)


def make_model(config: WorldConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    torch.manual_seed(config.seed)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden, intermediate_size=2 * config.hidden,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None, tie_word_embeddings=False,
    ))


def _batch(tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str], responses: Sequence[Sequence[str]],
           ended: Sequence[bool] | None = None):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 outside the response and its EOS;
    no EOS where ``ended`` is False)."""
    answers = [tokenizer(" ".join(words))["input_ids"] if words else [] for words in responses]
    return answer_batch([tokenizer(p)["input_ids"] for p in prompts], answers, ended, eos=tokenizer.eos_token_id,
                        pad=tokenizer.pad_token_id)


def _never(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Token ids :func:`sample` never emits: padding, unknown, the prompt's end."""
    return tokenizer.convert_tokens_to_ids(["<pad>", "<unk>", PROMPT_END])


def response_logps(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str],
                   responses: Sequence[Sequence[str]], ended: Sequence[bool] | None = None,
                   batch_size: int = 256) -> Tensor:
    """``[N]`` float32 log-probs of responses given prompts, summed over the response tokens.

    ``ended=None``: ``log pi(y + </s> | x)`` under the model's plain distribution (how the trainer scores a
    pair). With ``ended`` (from :func:`sample`): the exact log-probability of the *sampling process* that
    produced ``y`` (:mod:`adadpo.bench.sampling`), whose never-emitted tokens are padding, unknown and the
    prompt's end.
    """
    out = []
    with torch.no_grad():
        for s in range(0, len(prompts), batch_size):
            chunk_ended = None if ended is None else ended[s : s + batch_size]
            batch = _batch(tokenizer, prompts[s : s + batch_size], responses[s : s + batch_size], chunk_ended)
            out.append(score(model, batch, process=ended is not None, never=_never(tokenizer),
                             eos=tokenizer.eos_token_id))
    return torch.cat(out)


def sft(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, config: WorldConfig, prompts: Sequence[Prompt],
        progress: Callable[[int, int], None] | None = None) -> list[float]:
    """Supervised fine-tuning on one noisy demonstration per prompt and epoch (fresh noise each epoch).

    Loss: mean negative log-likelihood per response token (EOS included). Returns the loss per step.
    """
    rng = random.Random(config.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=config.sft_lr, weight_decay=0.0)
    steps_per_epoch = -(-len(prompts) // config.sft_batch)
    total = config.sft_epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.0, 1 - s / total))
    model.train()
    losses = []
    for _ in range(config.sft_epochs):
        order = list(prompts)
        rng.shuffle(order)
        for s in range(0, len(order), config.sft_batch):
            chunk = order[s : s + config.sft_batch]
            ids, mask, labels = _batch(tokenizer, [p.text for p in chunk], [demonstration(config, p, rng) for p in chunk])
            out = sequence_logps(model(input_ids=ids, attention_mask=mask, use_cache=False).logits, labels)
            loss = -out.logps.sum() / out.lengths.sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if progress:
                progress(len(losses), total)
    model.eval()
    return losses


def sample(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str], *, n: int = 1,
           max_new_tokens: int, seed: int, batch_size: int = 512, with_ended: bool = False):
    """``n`` samples per prompt at temperature 1 (no top-k/top-p), prompt-major: ``len(prompts) * n`` word lists.

    The first token is never EOS, so no answer is empty, and padding, unknown and prompt-end tokens are never
    sampled (an SFT'd policy gives them ~0 probability anyway); an answer that reaches ``max_new_tokens``
    without EOS ends there. ``with_ended=True`` also returns, per answer, whether it ended with EOS, which
    :func:`response_logps` needs to score the sampling process exactly.
    """
    torch.manual_seed(seed)
    flat = [p for p in prompts for _ in range(n)]
    out: list[list[str]] = []
    ended: list[bool] = []
    with torch.no_grad():
        for s in range(0, len(flat), batch_size):
            for row in generate(model, tokenizer, flat[s : s + batch_size], temperature=1.0,
                                max_new_tokens=max_new_tokens, never=_never(tokenizer), pad=tokenizer.pad_token_id):
                ids, done = cut_at_eos(row, tokenizer.eos_token_id)
                out.append(tokenizer.convert_ids_to_tokens(ids))
                ended.append(done)
    return (out, ended) if with_ended else out
