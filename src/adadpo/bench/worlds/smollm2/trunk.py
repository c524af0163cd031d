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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class TrunkCache:
    """Trunk outputs by token sequence: ``{tuple(ids): [n, hidden] tensor}``, shared by the runs of a process."""

    def __init__(self) -> None:
        self.outputs: dict[tuple[int, ...], Tensor] = {}
        self.hits = 0
        self.misses = 0


class _Skip(nn.Module):
    """A frozen block whose work the cached trunk has already done."""

    def forward(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        return hidden_states


class _CachedTrunk(nn.Module):
    """The first frozen block's slot: returns the whole frozen trunk's output for each row of the batch."""

    def __init__(self, backbone: nn.Module, blocks: list[nn.Module], cache: TrunkCache) -> None:
        super().__init__()
        self._backbone = [backbone]  # not a submodule: its parameters stay where they are
        self._blocks = blocks
        self._cache = cache
        self.input_ids: Tensor | None = None
        self.attention_mask: Tensor | None = None

    def _alone(self, embeds: Tensor) -> Tensor:
        """The frozen blocks on one unpadded sequence ``[1, n, hidden]``."""
        from transformers.masking_utils import create_causal_mask

        backbone = self._backbone[0]
        pos = torch.arange(embeds.shape[1], device=embeds.device)[None]
        mask = create_causal_mask(config=backbone.config, inputs_embeds=embeds,
                                  attention_mask=torch.ones_like(pos), cache=None, position_ids=pos)
        pe = backbone.rotary_emb(embeds, position_ids=pos)
        h = embeds
        for block in self._blocks:
            h = block(h, attention_mask=mask, position_embeddings=pe, position_ids=pos)
        return h[0]

    def forward(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        ids, mask = self.input_ids, self.attention_mask
        if ids is None or ids.shape != hidden_states.shape[:2]:
            raise RuntimeError("cached_trunk: the backbone was called without input_ids of the batch's shape")
        lengths = mask.sum(1) if mask is not None else torch.full(ids.shape[:1], ids.shape[1])
        if mask is not None and not torch.equal(mask, (torch.arange(ids.shape[1]) < lengths[:, None]).to(mask.dtype)):
            raise RuntimeError("cached_trunk: rows must be right-padded (ones then zeros in attention_mask)")
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


@contextmanager
def cached_trunk(model: nn.Module, trained_blocks: int, cache: TrunkCache) -> Iterator[TrunkCache]:
    """Inside the block, ``model``'s bottom ``len(blocks) - trained_blocks`` decoder blocks are served from
    ``cache``. The embeddings and those blocks must be frozen (their output is returned without a graph)."""
    backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    layers = backbone.layers
    frozen = len(layers) - trained_blocks
    if frozen <= 0:
        yield cache
        return
    original = list(layers)
    if any(p.requires_grad for block in original[:frozen] for p in block.parameters()) or \
            any(p.requires_grad for p in backbone.embed_tokens.parameters()):
        raise ValueError("cached_trunk: the embeddings and the bottom blocks must be frozen")
    trunk = _CachedTrunk(backbone, original[:frozen], cache)

    def capture(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        trunk.input_ids, trunk.attention_mask = ids, kwargs.get("attention_mask")

    handle = backbone.register_forward_pre_hook(capture, with_kwargs=True)
    layers[0] = trunk
    for i in range(1, frozen):
        layers[i] = _Skip()
    try:
        yield cache
    finally:
        handle.remove()
        for i, block in enumerate(original):
            layers[i] = block
