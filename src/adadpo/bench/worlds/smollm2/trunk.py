"""The frozen trunk's output, computed once per sequence instead of once per training step.

A run of the real-model world trains only the top blocks (:func:`adadpo.bench.worlds.smollm2.run.freeze_below`); the
embeddings and the blocks below never change, so their output for a given token sequence is the same in
every step, every epoch and every run that starts from the same reference. :func:`cached_trunk` replaces
the frozen blocks, for the duration of a ``with`` block, by one module that returns that output from a
:class:`TrunkCache` (computing it on a miss), so a training step runs only the trained blocks and the head.
On SmolLM2 with 4 of 30 blocks trained the frozen blocks are about three quarters of a step's forward FLOPs
and none of its backward. Measured by ``benchmarks/smollm2_trunk.py`` (training time against the uncached
path): about 0.5x once every sequence is cached, about 1.5x while the cache fills (a miss runs the frozen
blocks on one sequence, not a batch), so a worker's first run costs about what it did without the cache and
its later runs about half.

Exactness: a miss is computed for the sequence alone (no padding, batch of one), so the cached value does not
depend on which batch met the sequence first and runs are deterministic; it differs from the uncached path
only by the float rounding of another batch shape. Rows must be right-padded (TRL's collator pads right);
anything else raises rather than returning a wrong trunk output.

Unpadded top blocks (``cached_trunk(..., unpadded=True)``, the world's default through
:data:`adadpo.bench.worlds.smollm2.run.UNPADDED_TOP`): TRL's collator stacks chosen and rejected rows and pads
them to the longest, and on the world's training set only about a third of a batch's positions are real tokens,
so the trained blocks, forward and backward, spent most of their work on padding. With ``unpadded`` they run on
each row's real tokens alone (positions ``0 .. n-1``, its own causal mask and rotary embeddings, as a batch of
one), and the rows are padded back with zeros for the final norm and the head, which read only counted (response)
tokens. Row by row rather than all rows packed into one sequence with a block-diagonal mask: packed, attention
costs the square of the whole batch's length; on the trained 4 blocks alone (forward and backward, random
batches of 16 of the world's training sequences, 32% real) packed took 0.43-0.48x of the padded time, row by row
0.34-0.36x. A real token's value does not depend on the padding in either path (causal attention, right padding),
so the two agree up to float rounding, and the unpadded path's loss and gradients do not change at all when the
padding's content does (tests/test_lmworld_trunk.py). Measured by ``benchmarks/smollm2_trunk.py --pairs 64
--repeats 4 --modes warm,unpadded`` (8 steps of DPO through the sweep's ``train_policy``, warm trunk cache,
alternating order, ratio within each repeat, a shared machine): training time **0.62x** the padded path's
(0.57-0.68), 3.7 against 5.9 s per step; the logged losses agree to 1.3e-6 relative at most. By FLOP count
what remains of a step is about half the LM head on the response tokens (49152 x 576 per counted token,
forward, recomputed and backward) and half the 4 trained blocks on every real token.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn

try:
    import fcntl
except ImportError:  # not POSIX: no lock between processes
    fcntl = None


class TrunkCache:
    """Trunk outputs by token sequence: ``{tuple(ids): [n, hidden] tensor}``, shared by the runs of a process
    and, through :meth:`save` and :meth:`load`, by the processes that use the same world."""

    def __init__(self) -> None:
        self.outputs: dict[tuple[int, ...], Tensor] = {}
        self.hits = 0
        self.misses = 0
        self.saved = False  # holds everything its file held when last loaded or saved

    def fill(self, model: nn.Module, trained_blocks: int, input_ids: Tensor, attention_mask: Tensor) -> int:
        """Compute the trunk output of every right-padded row not cached yet, each alone (as a miss in
        :func:`cached_trunk` is); returns how many were computed. ``model``'s embeddings and bottom blocks
        must be frozen (see :func:`cached_trunk`)."""
        backbone = _backbone(model)
        layers = list(backbone.layers)
        # inside cached_trunk the frozen blocks' slots hold the cache: its blocks are the model's own
        blocks = layers[0]._blocks if isinstance(layers[0], _CachedTrunk) else layers[: len(layers) - trained_blocks]
        if len(blocks) != len(layers) - trained_blocks:
            raise ValueError(f"TrunkCache.fill: trained_blocks={trained_blocks} is not the served trunk's")
        trunk = _CachedTrunk(backbone, blocks, self)
        lengths = _right_padded_lengths(input_ids, attention_mask, "TrunkCache.fill")
        computed = 0
        with torch.no_grad():
            for row, n in zip(input_ids, lengths.tolist()):
                key = tuple(row[:n].tolist())
                if key not in self.outputs:
                    self.outputs[key] = trunk._alone(backbone.embed_tokens(row[None, :n]))
                    self.misses += 1
                    computed += 1
        return computed

    def save(self, path: str | os.PathLike) -> None:
        """Write the cache to ``path`` atomically (a temporary file renamed over it), merged with what is there."""
        path = Path(path)
        merged = {**self.load(path).outputs, **self.outputs} if path.exists() else self.outputs
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"version": 1, "outputs": merged}, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrunkCache:
        cache = cls()
        if Path(path).exists():
            cache.outputs = torch.load(path, weights_only=True)["outputs"]
        return cache


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) between processes; released when the block ends
    or the process dies. A no-op where ``fcntl`` is missing."""
    if fcntl is None:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _right_padded_lengths(input_ids: Tensor, attention_mask: Tensor | None, who: str) -> Tensor:
    """``[B]`` row lengths of a right-padded batch (all of ``input_ids`` without a mask); raises otherwise."""
    if attention_mask is None:
        return torch.full(input_ids.shape[:1], input_ids.shape[1])
    lengths = attention_mask.sum(1)
    if not torch.equal(attention_mask, (torch.arange(input_ids.shape[1]) < lengths[:, None]).to(attention_mask.dtype)):
        raise RuntimeError(f"{who}: rows must be right-padded (ones then zeros in attention_mask)")
    return lengths


def _backbone(model: nn.Module) -> nn.Module:
    return model.get_decoder() if hasattr(model, "get_decoder") else model.model


def _alone(backbone: nn.Module, blocks: Sequence[Callable[..., Tensor]], embeds: Tensor, **kwargs) -> Tensor:
    """``blocks`` (decoder blocks or their forwards) in turn on one unpadded sequence ``embeds`` ``[1, n, hidden]``
    with its own positions ``0 .. n-1``, causal mask and rotary embeddings (as the decoder builds them for a
    batch of one without padding); ``kwargs`` are passed on to every block. Returns ``[1, n, hidden]``."""
    from transformers.masking_utils import create_causal_mask

    pos = torch.arange(embeds.shape[1], device=embeds.device)[None]
    mask = create_causal_mask(config=backbone.config, inputs_embeds=embeds,
                              attention_mask=torch.ones_like(pos), cache=None, position_ids=pos)
    pe = backbone.rotary_emb(embeds, position_ids=pos)
    h = embeds
    for block in blocks:
        h = block(h, attention_mask=mask, position_embeddings=pe, position_ids=pos, **kwargs)
    return h


class _Skip(nn.Module):
    """A frozen block whose work the cached trunk has already done."""

    def forward(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        return hidden_states


class _Slot(nn.Module):
    """Layer 0's stand-in for a served trunk: sees the backbone's ``input_ids`` and ``attention_mask`` (set by
    :func:`_serving`'s pre-hook) and returns the frozen blocks' output for the batch."""

    input_ids: Tensor | None = None
    attention_mask: Tensor | None = None

    def batch(self, hidden_states: Tensor, who: str) -> tuple[Tensor, Tensor | None]:
        ids = self.input_ids
        if ids is None or ids.shape != hidden_states.shape[:2]:
            raise RuntimeError(f"{who}: the backbone was called without input_ids of the batch's shape")
        return ids, self.attention_mask


@contextmanager
def _serving(backbone: nn.Module, frozen: int, slot: _Slot) -> Iterator[None]:
    """Inside the block, ``backbone``'s layer 0 is ``slot`` and layers ``1 .. frozen-1`` pass their input
    through; a forward pre-hook hands each call's ``input_ids`` and ``attention_mask`` to ``slot``. The
    original layers and hooks are restored on exit, also after an exception."""
    original = list(backbone.layers)

    def capture(module, args, kwargs):
        slot.input_ids = kwargs.get("input_ids", args[0] if args else None)
        slot.attention_mask = kwargs.get("attention_mask")

    handle = backbone.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        backbone.layers[0] = slot
        for i in range(1, frozen):
            backbone.layers[i] = _Skip()
        yield
    finally:
        handle.remove()
        for i, block in enumerate(original):
            backbone.layers[i] = block


class _CachedTrunk(_Slot):
    """The first frozen block's slot: returns the whole frozen trunk's output for each row of the batch."""

    def __init__(self, backbone: nn.Module, blocks: list[nn.Module], cache: TrunkCache) -> None:
        super().__init__()
        self._backbone = [backbone]  # not a submodule: its parameters stay where they are
        self._blocks = blocks
        self._cache = cache

    def _alone(self, embeds: Tensor) -> Tensor:
        """The frozen blocks on one unpadded sequence ``[1, n, hidden]``."""
        return _alone(self._backbone[0], self._blocks, embeds)[0]

    def forward(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        ids, mask = self.batch(hidden_states, "cached_trunk")
        lengths = _right_padded_lengths(ids, mask, "cached_trunk")
        out = torch.zeros_like(hidden_states)
        with torch.no_grad():
            for i, n in enumerate(lengths.tolist()):
                key = tuple(ids[i, :n].tolist())
                h = self._cache.outputs.get(key)
                if h is None:
                    self._cache.misses += 1
                    h = self._cache.outputs[key] = self._alone(hidden_states[i : i + 1, :n])
                else:
                    self._cache.hits += 1
                out[i, :n] = h
        return out


#: A decoder block's keywords that :func:`_unpadded_top` builds per row (or drops: the KV cache).
_ROW_OWN = ("attention_mask", "position_embeddings", "position_ids", "cache", "past_key_values", "use_cache")


@contextmanager
def _unpadded_top(backbone: nn.Module, blocks: list[nn.Module], slot: _Slot) -> Iterator[None]:
    """Inside the block, the trained ``blocks`` run on each row's real tokens alone: the first one's forward
    takes the ``[B, T, hidden]`` batch, runs every row's ``n`` real positions through all of ``blocks`` as a
    sequence of its own (:func:`_alone`: positions ``0 .. n-1``, as right padding gives them) and returns the
    rows padded with zeros to ``T``; the other blocks' forwards pass their input through. The blocks stay where
    they are (same modules, parameter names and optimizer state); only their ``forward`` attribute is replaced,
    and restored on exit. Training and scoring passes only: the blocks fill no KV cache (nor does the served
    trunk), so nothing can generate inside the block."""
    forwards = [block.forward for block in blocks]  # the blocks' own forwards, called row by row
    saved = [block.__dict__.get("forward") for block in blocks]

    def rows(hidden_states: Tensor, *args, **kwargs) -> Tensor:
        ids, mask = slot.batch(hidden_states, "cached_trunk(unpadded=True)")
        if args:
            raise RuntimeError("cached_trunk(unpadded=True): a block was called with positional arguments besides "
                               "the hidden states (not the decoder's own loop)")
        # no KV cache: rows are separate sequences (and the served trunk fills none either: no generation here)
        rest = {k: v for k, v in kwargs.items() if k not in _ROW_OWN} | {"use_cache": False}
        width = hidden_states.shape[1]
        out = []
        for i, n in enumerate(_right_padded_lengths(ids, mask, "cached_trunk").tolist()):
            h = _alone(backbone, forwards, hidden_states[i : i + 1, :n], **rest) if n else hidden_states[i : i + 1, :0]
            out.append(nn.functional.pad(h, (0, 0, 0, width - n)))
        return torch.cat(out)

    def through(hidden_states: Tensor, *args, **kwargs) -> Tensor:
        return hidden_states

    try:
        for block, forward in zip(blocks, [rows] + [through] * (len(blocks) - 1)):
            block.forward = forward
        yield
    finally:
        for block, previous in zip(blocks, saved):
            if previous is None:
                block.__dict__.pop("forward", None)
            else:
                block.forward = previous


@contextmanager
def cached_trunk(model: nn.Module, trained_blocks: int, cache: TrunkCache, unpadded: bool = False
                 ) -> Iterator[TrunkCache]:
    """Inside the block, ``model``'s bottom ``len(blocks) - trained_blocks`` decoder blocks are served from
    ``cache``. The embeddings and those blocks must be frozen (their output is returned without a graph).

    ``unpadded``: the top ``trained_blocks`` run on each row's real tokens only (:func:`_unpadded_top`), not on
    the padded batch; a padded position's final hidden state is then 0 instead of a value nothing reads (the
    loss counts response tokens only). Equal to the padded path up to float rounding (see the module doc)."""
    backbone = _backbone(model)
    layers = backbone.layers
    frozen = len(layers) - trained_blocks
    if frozen <= 0:
        yield cache
        return
    original = list(layers)
    if any(p.requires_grad for block in original[:frozen] for p in block.parameters()) or \
            any(p.requires_grad for p in backbone.embed_tokens.parameters()):
        raise ValueError("cached_trunk: the embeddings and the bottom blocks must be frozen")
    slot = _CachedTrunk(backbone, original[:frozen], cache)
    with _serving(backbone, frozen, slot), \
            _unpadded_top(backbone, original[frozen:], slot) if unpadded else nullcontext():
        yield cache


# --------------------------------------------------------------------------------------------- evaluation


def shared_blocks(a: nn.Module, b: nn.Module) -> int:
    """How many bottom decoder blocks models ``a`` and ``b`` share: equal token embeddings and equal weights
    in blocks ``0 .. k-1`` (0 when the embeddings differ). A trained policy shares its frozen trunk with the
    reference it started from."""
    ba, bb = _backbone(a), _backbone(b)
    if not _equal(ba.embed_tokens, bb.embed_tokens):
        return 0
    k = 0
    for block_a, block_b in zip(ba.layers, bb.layers):
        if not _equal(block_a, block_b):
            break
        k += 1
    return k


def _equal(a: nn.Module, b: nn.Module) -> bool:
    pa, pb = a.state_dict(), b.state_dict()
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


def _digest(blocks: Sequence[nn.Module], embeddings: nn.Module) -> str:
    h = hashlib.sha256()
    for module in (embeddings, *blocks):
        for name, t in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


class TrunkMemo:
    """Frozen-trunk outputs by whole batch (its ``input_ids`` and ``attention_mask``) and trunk weights.

    Unlike :class:`TrunkCache` a batch is computed as the model would compute it (the frozen blocks on the
    padded batch, the decoder's own mask and positions), so a model served from the memo gives bit for bit
    the output of running every block: sharing is exact, not up to rounding. Used where the same batch goes
    through the same trunk twice: the policy's and the reference's KL scoring of one batch, and every run's
    scoring of the world's fixed held-out pairs (the same batches in every run)."""

    def __init__(self) -> None:
        self.outputs: dict[tuple, Tensor] = {}
        self.hits = 0
        self.misses = 0


class _MemoTrunk(_Slot):
    """The first shared block's slot: the frozen blocks on the batch, or their stored output for it."""

    def __init__(self, blocks: list[nn.Module], memo: TrunkMemo, digest: str) -> None:
        super().__init__()
        self._blocks = blocks  # a plain list: the model's own blocks, not re-registered
        self._memo, self._digest = memo, digest

    def forward(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        ids, mask = self.batch(hidden_states, "shared_trunk")
        if kwargs.get("past_key_values") is not None:  # generation: the blocks also fill a KV cache
            raise RuntimeError("shared_trunk serves scoring passes (use_cache=False), not generation")
        key = (self._digest, tuple(ids.shape), ids.cpu().numpy().tobytes(),
               None if mask is None else mask.cpu().numpy().tobytes())
        out = self._memo.outputs.get(key)
        if out is None:
            self._memo.misses += 1
            out = hidden_states
            with torch.no_grad():
                for block in self._blocks:
                    out = block(out, *args, **kwargs)
            self._memo.outputs[key] = out
        else:
            self._memo.hits += 1
        return out


@contextmanager
def shared_trunk(models: Sequence[nn.Module], frozen: int, memo: TrunkMemo) -> Iterator[TrunkMemo]:
    """Inside the block, the bottom ``frozen`` decoder blocks of every model in ``models`` are served from
    ``memo`` (forward only, no gradients): a batch met before, by any of them, with the same trunk weights,
    is not computed again. The models must share those blocks and their embeddings (:func:`shared_blocks`
    at least ``frozen`` for each against the first); ``frozen <= 0`` changes nothing."""
    if frozen <= 0 or not models:
        yield memo
        return
    first = models[0]
    if any(shared_blocks(first, m) < frozen for m in models[1:]):
        raise ValueError(f"shared_trunk: the models do not share their bottom {frozen} blocks and embeddings")
    backbones = [_backbone(m) for m in models]
    blocks = list(backbones[0].layers)[:frozen]
    digest = _digest(blocks, backbones[0].embed_tokens)
    with ExitStack() as stack:
        for backbone in backbones:
            stack.enter_context(_serving(backbone, frozen, _MemoTrunk(list(backbone.layers)[:frozen], memo, digest)))
        yield memo
