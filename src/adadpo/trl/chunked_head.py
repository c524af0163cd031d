"""The chunked LM head: model surgery that lets a causal LM return per-token log-probs without full logits.

:func:`install_chunked_head` wraps ``model.forward`` so that ``model(..., labels=labels, adadpo_chunked=True)``
runs the backbone and then :func:`adadpo.core.logps.linear_token_logps` on the last hidden state and the LM
head weight, a chunk of counted tokens at a time: the ``[B, T, V]`` logits never exist.
:func:`chunked_head_problem` says which models it cannot serve.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers.utils import ModelOutput

from adadpo.core.logps import TokenLogps, linear_token_logps
from adadpo.trl.sharding import call_gathered

#: Marker attribute set on a causal LM whose forward :func:`install_chunked_head` has wrapped.
_CHUNKED_MARKER = "_adadpo_chunked_head"
#: Config fields that rescale or cap the logits after the LM head (the chunked head does not apply them).
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


@dataclass
class ChunkedHeadOutput(ModelOutput):
    """What a model with :func:`install_chunked_head` returns for ``adadpo_chunked=True``: the per-token
    log-probs of :func:`~adadpo.core.logps.linear_token_logps` as they are (``tokens``; with
    ``adadpo_stats=True`` also TRL's token statistics) and ``aux_loss``, the MoE load-balancing loss when
    router logits were requested, else ``None``."""

    tokens: TokenLogps | None = None
    aux_loss: Tensor | None = None


def chunked_head_problem(model: Any) -> str | None:
    """Why :func:`install_chunked_head` cannot serve ``model`` (an unwrapped causal LM), or ``None`` if it can.

    The chunked head computes ``log_softmax(hidden @ W.T + b)`` itself, so it needs a backbone separate
    from the head (``model.base_model``), an output layer that is exactly ``torch.nn.Linear`` (not a PEFT,
    quantised or parallel layer) and no transformation of the logits after it (soft-capping, scaling).
    """
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if type(head) is not torch.nn.Linear:
        return f"its output layer is {type(head).__name__}, not a plain torch.nn.Linear"
    config = getattr(model, "config", None)
    if config is None or getattr(model, "base_model", model) is model:
        return "it has no backbone separate from its LM head (model.base_model)"
    text_config = config.get_text_config()
    if text_config is not config:
        return "it is a multimodal model (its text config is nested)"
    for name in _LOGIT_TRANSFORMS:
        value = getattr(text_config, name, None)
        if value is not None and not (name != "final_logit_softcapping" and value == 1):
            return f"its config transforms the logits after the LM head ({name}={value!r})"
    return None


def _router_aux_loss(model: Any, backbone_outputs: Any, attention_mask: Tensor | None) -> Tensor:
    """The MoE load-balancing loss, as the model's own forward (and TRL's fused head) computes it."""
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    text_config = model.config.get_text_config()
    num_experts = getattr(model, "num_experts", None) or text_config.num_experts
    top_k = getattr(model, "num_experts_per_tok", None) or text_config.num_experts_per_tok
    return load_balancing_loss_func(backbone_outputs.router_logits, num_experts, top_k, attention_mask)


def install_chunked_head(model: Any) -> None:
    """Let ``model(..., labels=labels, adadpo_chunked=True)`` return :class:`ChunkedHeadOutput`.

    Wraps ``model.forward`` (an unwrapped causal LM; check :func:`chunked_head_problem` first). With
    ``adadpo_chunked=True`` the wrapper runs the backbone (``model.base_model``, which carries any LoRA
    layers) and then :func:`~adadpo.core.logps.linear_token_logps` on its last hidden state and
    ``model.get_output_embeddings()``'s weight and bias, looked up on every call and read inside the head's
    own ``__call__`` (:func:`~adadpo.trl.sharding.call_gathered`), so an FSDP2-sharded head, tied to the input
    embeddings or not, is gathered while it is read. Extra keywords:
    ``adadpo_stats`` (also the per-token entropy, mean logit and top-1 flag), ``adadpo_chunk_size`` and
    ``adadpo_index`` (:func:`~adadpo.core.logps.counted_tokens` of ``labels``, found once per batch).
    Without ``adadpo_chunked`` the forward is the previous one. Because the call goes through
    ``model.__call__``, DDP, PEFT and accelerate's autocast wrappers around ``model`` still apply.
    Idempotent.
    """
    if getattr(model, _CHUNKED_MARKER, False):
        return
    previous = model.forward
    text_config = model.config.get_text_config()

    # keep the original signature (``generate`` validates its kwargs against it): wrap the function, not the bound method
    @functools.wraps(getattr(previous, "__func__", previous))
    def forward(
        self: Any,
        *args: Any,
        adadpo_chunked: bool = False,
        adadpo_stats: bool = False,
        adadpo_chunk_size: int | None = None,
        adadpo_index: Any = None,
        labels: Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        if not adadpo_chunked:
            return previous(*args, **({**kwargs, "labels": labels} if labels is not None else kwargs))
        if labels is None:
            raise ValueError("adadpo_chunked=True needs labels (input_ids with -100 where nothing is scored)")
        kwargs["use_cache"] = False
        if getattr(text_config, "output_router_logits", False):
            kwargs.setdefault("output_router_logits", True)
        backbone_outputs = self.base_model(*args, **kwargs)
        head = self.get_output_embeddings()

        def chunked(hidden: Tensor, labels: Tensor) -> TokenLogps:  # run as the head's forward: FSDP gathers it
            return linear_token_logps(hidden, head.weight, labels, bias=head.bias, chunk_size=adadpo_chunk_size,
                                      stats=adadpo_stats, index=adadpo_index)

        device = head.weight.device
        tokens = call_gathered(head, chunked, backbone_outputs.last_hidden_state.to(device), labels.to(device))
        aux_loss = None
        if kwargs.get("output_router_logits"):
            aux_loss = _router_aux_loss(self, backbone_outputs, kwargs.get("attention_mask"))
        return ChunkedHeadOutput(tokens=tokens, aux_loss=aux_loss)

    model.forward = types.MethodType(forward, model)
    setattr(model, _CHUNKED_MARKER, True)
