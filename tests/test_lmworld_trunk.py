"""The frozen-trunk cache of the real-model world's runs (adadpo.bench.worlds.smollm2.trunk), on the tiny stand-in model:
the same logits and gradients as running every block, each sequence computed once, the model restored after."""

from __future__ import annotations

import lmworld_fixtures
import pytest
import torch
from lmworld_fixtures import LAYERS

from adadpo.bench.worlds.smollm2.run import freeze_below
from adadpo.bench.worlds.smollm2.trunk import TrunkCache, cached_trunk

tiny_model = lmworld_fixtures.tiny_model  # the session's stand-in model (a fixture)

torch.set_num_threads(1)


def _model(tiny_model, trained: int):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model).train()
    freeze_below(model, trained)
    return model


def _batch(vocab: int, lengths: list[int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(3, vocab, (len(lengths), width), generator=g)
    mask = (torch.arange(width) < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask  # right-padded with id 0


def _loss_and_grads(model, ids, mask):
    model.zero_grad()
    logits = model(input_ids=ids, attention_mask=mask).logits
    loss = (logits.log_softmax(-1)[..., 5] * mask).sum()
    loss.backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("trained", [1, 2])
def test_cached_trunk_gives_the_same_logits_and_gradients(tiny_model, trained):
    model = _model(tiny_model, trained)
    ids, mask = _batch(model.config.vocab_size, [7, 3, 5])
    logits, grads = _loss_and_grads(model, ids, mask)
    cache = TrunkCache()
    with cached_trunk(model, trained, cache):
        for _ in range(2):  # a miss for every sequence, then hits
            c_logits, c_grads = _loss_and_grads(model, ids, mask)
            real = mask.bool()
            torch.testing.assert_close(c_logits[real], logits[real], rtol=1e-5, atol=1e-5)
            assert grads.keys() == c_grads.keys() and grads
            for name in grads:  # float rounding of another batch shape, relative to the gradient's scale
                scale = float(grads[name].abs().max())
                torch.testing.assert_close(c_grads[name], grads[name], rtol=1e-4, atol=1e-4 * scale)
        assert (cache.misses, cache.hits) == (3, 3) and len(cache.outputs) == 3
        # a sequence met again in another batch (other padding, other row) is a hit with the same value
        again, again_mask = ids[[2, 0]], mask[[2, 0]]
        c_logits, _ = _loss_and_grads(model, again, again_mask)
        assert cache.misses == 3 and cache.hits == 5
    # restored: the blocks are the model's own again, and the cache changes nothing outside the block
    assert [type(b).__name__ for b in model.model.layers] == ["LlamaDecoderLayer"] * LAYERS
    after, _ = _loss_and_grads(model, ids, mask)
    torch.testing.assert_close(after, logits)


def test_cached_trunk_refuses_what_it_cannot_serve(tiny_model):
    model = _model(tiny_model, 1)
    ids, mask = _batch(model.config.vocab_size, [4, 2])
    with cached_trunk(model, 1, TrunkCache()):
        with pytest.raises(RuntimeError, match="right-padded"):
            model(input_ids=ids, attention_mask=mask.flip(1))
    unfrozen = _model(tiny_model, LAYERS)
    with pytest.raises(ValueError, match="must be frozen"):
        with cached_trunk(unfrozen, 1, TrunkCache()):
            pass
    with cached_trunk(unfrozen, LAYERS, TrunkCache()) as cache:  # nothing frozen: nothing to cache
        unfrozen(input_ids=ids, attention_mask=mask)
    assert cache.misses == 0
