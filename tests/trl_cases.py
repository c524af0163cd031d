"""Shared cases of the TRL parity tests (test_trl_parity, test_trl_loss_types): random DPO batches and TRL's own
``DPOTrainer._compute_loss`` called unbound on them, with the tolerances the comparisons use."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import torch
from trl import DPOTrainer

CPU = torch.device("cpu")


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}


def _close(actual, expected, dtype: torch.dtype = torch.float32, scale: float = 1.0) -> None:
    """Tensor-or-float comparison (TRL logs Python floats). ``scale`` multiplies ``atol``: the magnitude
    of the operands of a difference that may cancel (e.g. a reward margin), so that float32 rounding of
    two independently computed inputs is not mistaken for a disagreement."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    tol = _tol(dtype)
    tol["atol"] *= scale
    torch.testing.assert_close(torch.as_tensor(actual).to(torch.float64), expected, **tol)


def _magnitude(*values) -> float:
    """``1 + max |x|`` over tensors / floats, the scale of a float32 cancellation between them."""
    return 1.0 + max(float(torch.as_tensor(v, dtype=torch.float64).abs().max()) for v in values)


def _accelerator() -> SimpleNamespace:
    return SimpleNamespace(device=CPU, gather=lambda x: x, gather_for_metrics=lambda x: x)


def _spans(gen: torch.Generator, n: int, T: int, prompt_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded rows of width ``T``: prompt ``[0, P)``, response ``[P, P + L)``, padding after.

    ``P >= 1`` (so a shift never drops a response token) and ``L >= 1``. Returns ``(response, attention)``
    boolean masks ``[n, T]``.
    """
    P = torch.full((n,), prompt_len) if prompt_len is not None else torch.randint(1, T, (n,), generator=gen)
    L = (torch.rand(n, generator=gen) * (T - P)).long() + 1  # in [1, T - P]
    pos = torch.arange(T)[None, :]
    response = (pos >= P[:, None]) & (pos < (P + L)[:, None])
    attention = pos < (P + L)[:, None]
    return response, attention


# ------------------------------------------------------------------------------------------- dpo / ipo


def _trl_dpo(loss_type: str | list[str], beta: float, inputs: dict, raw_token_logps: torch.Tensor,
             log_sum_sq_probs: torch.Tensor | None = None, **attrs):
    """Run ``DPOTrainer._compute_loss`` with a fake trainer and a fake fused-head model. ``attrs`` override the
    fake trainer's loss attributes (``loss_weights``, ``ld_alpha``, ``f_divergence_type``, ``label_smoothing``,
    ``use_weighting``, ``args``, ...); ``log_sum_sq_probs`` is the fused head's WPO output."""
    n, width = raw_token_logps.shape
    seen = {}

    def fake_model(**kwargs):
        seen.update(kwargs)
        # The fused LM head returns 0 log-prob wherever the (shifted) label is -100.
        counted = kwargs["labels"][:, 1:] != -100
        return SimpleNamespace(
            log_probs=raw_token_logps * counted,
            entropy=torch.zeros(n, width, dtype=raw_token_logps.dtype),
            mean_logits=torch.zeros(n, width, dtype=raw_token_logps.dtype),
            is_top1=torch.zeros(n, width, dtype=torch.bool),
            log_sum_sq_probs=log_sum_sq_probs,
        )

    fake = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=_accelerator(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type] if isinstance(loss_type, str) else list(loss_type),
        loss_weights=[1.0] * (1 if isinstance(loss_type, str) else len(loss_type)),
        beta=beta,
        label_smoothing=0.0,
        use_weighting=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
        args=SimpleNamespace(),
    )
    for key, value in attrs.items():
        setattr(fake, key, value)
    loss = DPOTrainer._compute_loss(fake, fake_model, inputs, return_outputs=False)
    assert "labels" in seen, "the fake model was not called the way TRL 1.16 calls it"
    metrics = {k: v[-1] for k, v in fake._metrics["train"].items()}
    return loss, metrics


def _dpo_case(seed: int, B: int, dtype: torch.dtype, T: int = 12):
    gen = torch.Generator().manual_seed(seed)
    response, attention = _spans(gen, 2 * B, T)  # chosen rows first, then rejected
    completion_mask = response.long()
    inputs = {
        "input_ids": torch.randint(0, 50, (2 * B, T), generator=gen),
        "attention_mask": attention.long(),
        "completion_mask": completion_mask,
    }
    counted = completion_mask[:, 1:].to(dtype)
    raw = -4 * torch.rand(2 * B, T - 1, generator=gen, dtype=dtype)  # per-token log-probs in (-4, 0]
    ref_raw = -4 * torch.rand(2 * B, T - 1, generator=gen, dtype=dtype)
    sums = (raw * counted).sum(1)
    ref_sums = (ref_raw * counted).sum(1)
    lengths = completion_mask[:, 1:].sum(1)  # what sequence_logps would count
    # TRL's IPO divides by the *unshifted* completion_mask.sum; equal here since every prompt is >= 1 token.
    assert torch.equal(lengths, completion_mask.sum(1))
    inputs["ref_chosen_logps"], inputs["ref_rejected_logps"] = ref_sums.chunk(2)
    A_w, A_l = sums.chunk(2)
    T_w, T_l = lengths.chunk(2)
    R_w, R_l = ref_sums.chunk(2)
    adadpo_kwargs = dict(chosen_logps=A_w, rejected_logps=A_l, chosen_lengths=T_w, rejected_lengths=T_l,
                         ref_chosen_logps=R_w, ref_rejected_logps=R_l)
    return inputs, raw, adadpo_kwargs
