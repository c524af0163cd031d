"""The frozen-trunk cache of the real-model world's runs (adadpo.bench.worlds.smollm2.trunk), on the tiny stand-in model:
the same logits and gradients as running every block, each sequence computed once, the model restored after; the
trained blocks run unpadded (``unpadded=True``) give the padded path's loss and gradients, whatever the padding holds."""

from __future__ import annotations

import copy

import lmworld_fixtures
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lmworld_fixtures import LAYERS

import adadpo
from adadpo.core.logps import linear_sequence_logps

from adadpo.bench.worlds.smollm2.run import freeze_below
from adadpo.bench.worlds.smollm2.trunk import (TrunkCache, TrunkMemo, cached_trunk, file_lock, shared_blocks,
                                               shared_trunk)

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


def _pairs_batch(vocab: int, rows: list[tuple[int, int]], seed: int, pad=None):
    """A TRL-like batch of ``len(rows) // 2`` pairs (chosen rows, then rejected), right-padded: row ``i`` has
    ``rows[i] = (prompt, answer)`` tokens, the answer counted in ``labels``; ``pad(shape)`` fills the positions
    after each row's end (default id 0)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([p + a for p, a in rows])
    width = int(lengths.max())
    positions = torch.arange(width)
    real = positions < lengths[:, None]
    ids = torch.randint(3, vocab, (len(rows), width), generator=g)
    ids = torch.where(real, ids, pad(ids.shape) if pad is not None else torch.zeros_like(ids))
    counted = real & (positions >= torch.tensor([p for p, _ in rows])[:, None])
    return ids, real.long(), torch.where(counted, ids, -100)


def _pair_loss_and_grads(model, ids, mask, labels, loss: str, balance):
    """A preference loss over the batch's pairs from the backbone's hidden states and the LM head (the chunked
    backend's arithmetic) and the trained parameters' gradients."""
    model.zero_grad()
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    logps, lengths = linear_sequence_logps(hidden, model.lm_head.weight, labels)
    half = ids.shape[0] // 2
    ref = torch.linspace(-30.0, -10.0, 2 * half)
    refs = dict(ref_chosen_logps=ref[:half], ref_rejected_logps=ref[half:]) if adadpo.LOSSES[loss].needs_reference \
        else {}
    out = adadpo.preference_loss(loss, chosen_logps=logps[:half], rejected_logps=logps[half:],
                                 chosen_lengths=lengths[:half], rejected_lengths=lengths[half:], beta=0.1,
                                 balance=balance, **refs)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


_UNPADDED_MODELS: dict[int, object] = {}


@settings(max_examples=12, deadline=None)
@given(trained=st.sampled_from([1, 2]), loss=st.sampled_from(["dpo", "simpo"]), balanced=st.booleans(),
       rows=st.integers(1, 4).flatmap(lambda pairs: st.lists(st.tuples(st.integers(1, 6), st.integers(1, 30)),
                                                               min_size=2 * pairs, max_size=2 * pairs)),
       seed=st.integers(0, 2**16))
def test_unpadded_top_blocks_give_the_padded_loss_and_gradients(tiny_model, trained, loss, balanced, rows, seed):
    """Rows of very different lengths: the trained blocks on each row's real tokens alone give the padded
    path's loss and trained-parameter gradients up to float rounding, for a plain and a balanced loss; and
    what the padding holds (other pad ids, other tokens after a row's end) changes nothing at all."""
    model = _UNPADDED_MODELS.get(trained) or _UNPADDED_MODELS.setdefault(trained, _model(tiny_model, trained))
    vocab = model.config.vocab_size
    ids, mask, labels = _pairs_batch(vocab, rows, seed)
    balance = adadpo.Balance() if balanced else None
    cache = TrunkCache()
    with cached_trunk(model, trained, cache):
        loss_padded, grads_padded = _pair_loss_and_grads(model, ids, mask, labels, loss, balance)
    with cached_trunk(model, trained, cache, unpadded=True):
        loss_unpadded, grads_unpadded = _pair_loss_and_grads(model, ids, mask, labels, loss, balance)
        g = torch.Generator().manual_seed(seed + 1)
        for pad in (lambda shape: torch.full(shape, 2), lambda shape: torch.randint(3, vocab, shape, generator=g)):
            other = _pairs_batch(vocab, rows, seed, pad)
            assert torch.equal(other[0] * mask, ids) and not torch.equal(other[0], ids) or mask.all()
            loss_other, grads_other = _pair_loss_and_grads(model, *other, loss, balance)
            assert torch.equal(loss_other, loss_unpadded)  # exact: the padding is never read
            assert all(torch.equal(grads_other[n], grads_unpadded[n]) for n in grads_unpadded)
    torch.testing.assert_close(loss_unpadded, loss_padded, rtol=1e-5, atol=1e-6)
    assert grads_padded.keys() == grads_unpadded.keys() and grads_padded
    # float rounding of other matmul shapes, absolute part relative to the largest gradient: a gradient that is
    # 0 in exact arithmetic (a one-token row's attention query and key) is rounding noise in both paths
    scale = max(float(g.abs().max()) for g in grads_padded.values())
    for name in grads_padded:
        torch.testing.assert_close(grads_unpadded[name], grads_padded[name], rtol=1e-5, atol=1e-6 * scale)
    assert all("forward" not in vars(block) for block in model.model.layers)  # restored


def test_unpadded_top_keeps_the_parameters_and_zeroes_the_padding(tiny_model):
    """Inside ``unpadded=True`` the model's parameters are the same objects under the same names (an optimizer
    built inside the block trains them), the padded positions' final hidden states are 0, and a pass that asks
    for a KV cache (a scoring pass's default) gives the same hidden states; only positional arguments to a
    block (not the decoder's loop) are refused."""
    model = _model(tiny_model, 2)
    def trained():
        return {name: id(p) for name, p in model.named_parameters() if p.requires_grad}

    names = trained()
    ids, mask = _batch(model.config.vocab_size, [6, 2, 4])
    with cached_trunk(model, 2, TrunkCache(), unpadded=True):
        assert trained() == names and len(names) > 2
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.equal(hidden[~mask.bool()], torch.zeros_like(hidden[~mask.bool()]))
        assert hidden[mask.bool()].abs().sum(-1).min() > 0
        for use_cache in (True, False):
            again = model.model(input_ids=ids, attention_mask=mask, use_cache=use_cache).last_hidden_state
            assert torch.equal(again, hidden)
        with pytest.raises(RuntimeError, match="positional arguments"):
            model.model.layers[-2](hidden, mask)


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


def test_fill_save_and_load_serve_the_same_trunk(tiny_model, tmp_path):
    model = _model(tiny_model, 1)
    ids, mask = _batch(model.config.vocab_size, [6, 2, 4])
    filled = TrunkCache()
    assert filled.fill(model, 1, ids, mask) == 3 and filled.fill(model, 1, ids, mask) == 0
    with pytest.raises(RuntimeError, match="right-padded"):
        filled.fill(model, 1, ids, mask.flip(1))
    served = TrunkCache()
    with cached_trunk(model, 1, served):
        model(input_ids=ids, attention_mask=mask)
    assert served.outputs.keys() == filled.outputs.keys()
    for key in served.outputs:  # fill computes a sequence exactly as a miss does
        assert torch.equal(served.outputs[key], filled.outputs[key])

    path = tmp_path / "trunk.pt"
    filled.save(path)
    more = TrunkCache()
    more.fill(model, 1, ids[:1, :3], mask[:1, :3])  # another sequence (a prefix), saved into the same file
    more.save(path)
    loaded = TrunkCache.load(path)
    assert loaded.outputs.keys() == filled.outputs.keys() | more.outputs.keys() and len(loaded.outputs) == 4
    assert all(torch.equal(loaded.outputs[k], filled.outputs[k]) for k in filled.outputs)
    assert not list(tmp_path.glob(".*tmp"))  # written through a temporary file renamed over it
    assert TrunkCache.load(tmp_path / "missing.pt").outputs == {}
    with file_lock(tmp_path / ".lock"):  # re-entrant across with blocks, created on first use
        pass
    with file_lock(tmp_path / ".lock"):
        pass


def test_shared_trunk_is_bit_for_bit_and_computes_a_batch_once(tiny_model):
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    policy = _model(tiny_model, 1).eval()
    with torch.no_grad():  # "train" the top block
        for p in policy.model.layers[-1].parameters():
            p.add_(0.01 * torch.randn_like(p))
    assert shared_blocks(policy, reference) == LAYERS - 1 and shared_blocks(reference, reference) == LAYERS
    ids, mask = _batch(policy.config.vocab_size, [5, 7, 2])
    with torch.no_grad():
        plain = [m(input_ids=ids, attention_mask=mask).logits for m in (policy, reference)]
        memo = TrunkMemo()
        with shared_trunk([policy, reference], LAYERS - 1, memo):
            shared = [m(input_ids=ids, attention_mask=mask).logits for m in (policy, reference)]
            assert (memo.misses, memo.hits) == (1, 1)
            other = policy(input_ids=ids[:2], attention_mask=mask[:2]).logits  # another batch: computed
            assert memo.misses == 2
        for a, b in zip(plain, shared):
            assert torch.equal(a, b)  # exact, not up to rounding
        assert torch.equal(other, policy(input_ids=ids[:2], attention_mask=mask[:2]).logits)
        # the memo is keyed by the trunk's weights: a model with another trunk does not read it
        changed = copy.deepcopy(reference)
        changed.model.layers[0].mlp.down_proj.weight.add_(0.01)
        with shared_trunk([changed], LAYERS - 1, memo):
            served = changed(input_ids=ids, attention_mask=mask).logits
        assert memo.misses == 3 and torch.equal(served, changed(input_ids=ids, attention_mask=mask).logits)
    assert [type(b).__name__ for b in policy.model.layers] == ["LlamaDecoderLayer"] * LAYERS
    assert [type(b).__name__ for b in reference.model.layers] == ["LlamaDecoderLayer"] * LAYERS
    assert shared_blocks(changed, reference) == 0
    with pytest.raises(ValueError, match="do not share"):
        with shared_trunk([policy, changed], LAYERS - 1, memo):
            pass


def test_an_error_inside_either_trunk_restores_the_model(tiny_model):
    """Layers and the capturing pre-hook are put back also when the block raises (a failed step, an OOM)."""
    model = _model(tiny_model, 1)
    ids, mask = _batch(model.config.vocab_size, [4, 3])
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    own = list(model.model.layers)
    serving = [lambda: cached_trunk(model, 1, TrunkCache()), lambda: cached_trunk(model, 1, TrunkCache(), unpadded=True),
               lambda: shared_trunk([model], LAYERS - 1, TrunkMemo())]
    for enter in serving:
        with pytest.raises(KeyError, match="boom"):
            with enter():
                assert type(model.model.layers[0]).__name__ != "LlamaDecoderLayer"
                assert len(model.model._forward_pre_hooks) == 1
                raise KeyError("boom")
        assert list(model.model.layers) == own and not model.model._forward_pre_hooks
        assert all("forward" not in vars(block) for block in own)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, before)


def test_file_lock_is_exclusive_between_holders(tmp_path):
    import threading
    import time

    held, waited = threading.Event(), []

    def hold():
        with file_lock(tmp_path / ".lock"):
            held.set()
            time.sleep(0.3)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    start = time.perf_counter()
    with file_lock(tmp_path / ".lock"):  # another open file: waits for the holder
        waited.append(time.perf_counter() - start)
    thread.join()
    assert waited[0] > 0.2
