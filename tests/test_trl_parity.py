"""Parity of adadpo's plain (``balance=None``) losses, metrics and log-prob helper with TRL 1.16's own code.

TRL's real methods are called unbound with a fake ``self`` (a ``SimpleNamespace``) and a fake model, so
no trainer is built and nothing of TRL's formulas is re-typed here:

- dpo / ipo:   ``DPOTrainer._compute_loss`` (loss and the logged ``rewards/*``, ``logps/*``);
- cpo / simpo: ``CPOTrainer.cpo_loss`` per pair, and ``CPOTrainer.get_batch_loss_metrics`` end to end
  (``concatenated_forward`` with its ``CrossEntropyLoss`` NLL, ``get_batch_logps``, the total loss);
- conservative dpo: ``CPOTrainer.cpo_loss`` (``sigmoid`` with ``label_smoothing``) fed the log-ratios;
- orpo:        ``ORPOTrainer.odds_ratio_loss`` per pair, and ``ORPOTrainer.get_batch_loss_metrics`` end
  to end on one-token prompts (the only case where TRL's NLL, which also covers prompt tokens, has the
  same scope as adadpo's response-only NLL);
- ``sequence_logps``: ``CPOTrainer.get_batch_logps`` (sum and average), values and gradients.

Documented convention differences that are *not* compared: TRL's ORPO NLL also covers prompt tokens,
and TRL's SimPO/ORPO log averaged ``logps/*`` where adadpo logs sums (the averages are checked instead
against adadpo's sums / lengths).
"""

from __future__ import annotations

import math
from types import MethodType, SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import adadpo
from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer

from trl_cases import _accelerator, _close, _dpo_case, _magnitude, _spans, _trl_dpo

torch.set_num_threads(1)

FAST = settings(max_examples=25, deadline=None)

seeds = st.integers(min_value=0, max_value=2**31 - 1)
batch_sizes = st.integers(min_value=1, max_value=8)
betas = st.floats(min_value=0.01, max_value=2.0, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("loss, loss_type", [("dpo", "sigmoid"), ("ipo", "ipo")])
@FAST
@given(seed=seeds, B=batch_sizes, beta=betas, dtype=st.sampled_from([torch.float64, torch.float32]))
def test_dpo_ipo_match_dpotrainer_compute_loss(loss, loss_type, seed, B, beta, dtype):
    inputs, raw, kwargs = _dpo_case(seed, B, dtype)
    trl_loss, trl_metrics = _trl_dpo(loss_type, beta, inputs, raw)
    out = adadpo.preference_loss(loss, beta=beta, **kwargs)

    assert out.loss.dtype == trl_loss.dtype == dtype
    _close(out.loss, trl_loss, dtype)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"):
        _close(out.metrics[key], trl_metrics[key], dtype)
    # TRL builds the accuracy in float32 (``.float()``), adadpo in the rewards' dtype.
    _close(out.metrics["rewards/accuracies"], trl_metrics["rewards/accuracies"])


# ------------------------------------------------------------------------------------------ cpo / simpo


def _fake_cpo(loss_type: str, beta: float, label_smoothing: float = 0.0, simpo_gamma: float = 0.5,
              cpo_alpha: float = 1.0) -> SimpleNamespace:
    fake = SimpleNamespace(
        alpha=0.0, beta=beta, loss_type=loss_type, simpo_gamma=simpo_gamma, label_smoothing=label_smoothing,
        cpo_alpha=cpo_alpha, accelerator=_accelerator(), is_encoder_decoder=False, pad_token_id=0,
        aux_loss_enabled=False, concatenated_inputs=CPOTrainer.concatenated_inputs,
        get_batch_logps=CPOTrainer.get_batch_logps,
    )
    fake.cpo_loss = MethodType(CPOTrainer.cpo_loss, fake)
    fake.concatenated_forward = MethodType(CPOTrainer.concatenated_forward, fake)
    return fake


def _pair_sums(seed: int, B: int, dtype=torch.float64):
    """Policy sums ``A`` (mean per-token log-prob in about (-4, -0.01)) and lengths ``T`` in [1, 40]."""
    gen = torch.Generator().manual_seed(seed)
    T = torch.randint(1, 41, (2, B), generator=gen)
    abar = -torch.exp(torch.empty(2, B, dtype=dtype).uniform_(math.log(0.01), math.log(4.0), generator=gen))
    A = abar * T.to(dtype)
    return A[0], A[1], T[0], T[1], gen


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@FAST
@given(seed=seeds, B=batch_sizes, beta=betas)
def test_cpo_per_pair_matches_cpo_loss(label_smoothing, seed, B, beta):
    A_w, A_l, T_w, T_l, _ = _pair_sums(seed, B)
    losses, r_w, r_l = CPOTrainer.cpo_loss(_fake_cpo("sigmoid", beta, label_smoothing), A_w, A_l)
    out = adadpo.preference_loss("cpo", chosen_logps=A_w, rejected_logps=A_l, chosen_lengths=T_w,
                                 rejected_lengths=T_l, beta=beta, label_smoothing=label_smoothing)
    _close(out.losses, losses, torch.float64)
    _close(out.chosen_rewards, r_w, torch.float64)
    _close(out.rejected_rewards, r_l, torch.float64)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@FAST
@given(seed=seeds, B=batch_sizes, beta=betas, gamma=st.floats(min_value=0.0, max_value=3.0))
def test_simpo_per_pair_matches_cpo_loss_simpo(label_smoothing, seed, B, beta, gamma):
    A_w, A_l, T_w, T_l, _ = _pair_sums(seed, B)
    abar_w, abar_l = A_w / T_w, A_l / T_l  # TRL's SimPO is fed averaged log-probs
    fake = _fake_cpo("simpo", beta, label_smoothing, simpo_gamma=gamma)
    losses, r_w, r_l = CPOTrainer.cpo_loss(fake, abar_w, abar_l)
    out = adadpo.preference_loss("simpo", chosen_logps=A_w, rejected_logps=A_l, chosen_lengths=T_w,
                                 rejected_lengths=T_l, beta=beta, gamma=gamma, label_smoothing=label_smoothing)
    _close(out.losses, losses, torch.float64)
    _close(out.loss, losses.mean(), torch.float64)
    _close(out.chosen_rewards, r_w, torch.float64)
    _close(out.rejected_rewards, r_l, torch.float64)


def _preference_batch(gen: torch.Generator, B: int, Tc: int, Tr: int, V: int, prompt_len: int | None = None):
    """A TRL CPO/ORPO-style batch (``chosen_*``/``rejected_*`` ids, attention mask, labels with -100 on
    prompt and padding), right-padded to different widths per side, plus the model's logits for the
    concatenated ``[2B, max(Tc, Tr), V]`` batch."""
    batch = {}
    for side, T in (("chosen", Tc), ("rejected", Tr)):
        response, attention = _spans(gen, B, T, prompt_len)
        ids = torch.randint(1, V, (B, T), generator=gen).masked_fill(~attention, 0)
        batch[f"{side}_input_ids"] = ids
        batch[f"{side}_attention_mask"] = attention.long()
        batch[f"{side}_labels"] = ids.masked_fill(~response, -100)
    logits = 3 * torch.randn(2 * B, max(Tc, Tr), V, generator=gen)
    return batch, logits


def _fake_lm(logits: torch.Tensor):
    def model(input_ids, attention_mask=None, use_cache=None, **kwargs):
        assert input_ids.shape == logits.shape[:2] and not kwargs
        return SimpleNamespace(logits=logits)

    return model


def _adadpo_sums(batch: dict, logits: torch.Tensor):
    """adadpo's response-token sums and counts for each side, straight from the logits."""
    B, Tc = batch["chosen_labels"].shape
    Tr = batch["rejected_labels"].shape[1]
    w = adadpo.sequence_logps(logits[:B, :Tc], batch["chosen_labels"])
    l = adadpo.sequence_logps(logits[B:, :Tr], batch["rejected_labels"])
    return dict(chosen_logps=w.logps, rejected_logps=l.logps, chosen_lengths=w.lengths, rejected_lengths=l.lengths)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("B, Tc, Tr", [(1, 6, 6), (3, 9, 5), (5, 7, 11)])
@pytest.mark.parametrize("label_smoothing, cpo_alpha", [(0.0, 1.0), (0.1, 1.0), (0.0, 0.3)])
def test_cpo_end_to_end_matches_get_batch_loss_metrics(seed, B, Tc, Tr, label_smoothing, cpo_alpha):
    gen = torch.Generator().manual_seed(seed)
    batch, logits = _preference_batch(gen, B, Tc, Tr, V=37)
    beta = 0.1 + seed / 4
    fake = _fake_cpo("sigmoid", beta, label_smoothing, cpo_alpha=cpo_alpha)
    trl_loss, trl_metrics = CPOTrainer.get_batch_loss_metrics(fake, _fake_lm(logits), batch)

    sums = _adadpo_sums(batch, logits)
    out = adadpo.preference_loss("cpo", beta=beta, cpo_alpha=cpo_alpha, label_smoothing=label_smoothing, **sums)
    # TRL's NLL: nn.CrossEntropyLoss (mean) over every chosen response token of the batch.
    _close(out.nll, trl_metrics["nll_loss"])
    _close(out.metrics["nll_loss"], trl_metrics["nll_loss"])
    _close(out.loss, trl_loss)
    # Both sides come from float32 log-prob sums computed by different code (TRL's get_batch_logps,
    # adadpo's sequence_logps): allow their rounding to cancel in the margins.
    mag = _magnitude(sums["chosen_logps"], sums["rejected_logps"])
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"):
        _close(out.metrics[key], trl_metrics[key], scale=mag)
    _close(out.metrics["rewards/accuracies"], trl_metrics["rewards/accuracies"])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("B, Tc, Tr", [(2, 8, 8), (4, 6, 10)])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_simpo_end_to_end_matches_get_batch_loss_metrics(seed, B, Tc, Tr, label_smoothing):
    gen = torch.Generator().manual_seed(100 + seed)
    batch, logits = _preference_batch(gen, B, Tc, Tr, V=29)
    beta, gamma = 2.0 + seed, 0.5 + seed / 3
    # cpo_alpha=0: plain SimPO (TRL adds no NLL term).
    fake = _fake_cpo("simpo", beta, label_smoothing, simpo_gamma=gamma, cpo_alpha=0.0)
    trl_loss, trl_metrics = CPOTrainer.get_batch_loss_metrics(fake, _fake_lm(logits), batch)

    sums = _adadpo_sums(batch, logits)
    out = adadpo.preference_loss("simpo", beta=beta, gamma=gamma, label_smoothing=label_smoothing, **sums)
    _close(out.loss, trl_loss)
    mag = _magnitude(out.chosen_rewards, out.rejected_rewards)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        _close(out.metrics[key], trl_metrics[key], scale=mag)
    _close(out.metrics["rewards/accuracies"], trl_metrics["rewards/accuracies"])
    # TRL logs averaged log-probs for SimPO, adadpo logs sums (documented); compare the averages.
    _close((sums["chosen_logps"] / sums["chosen_lengths"]).mean(), trl_metrics["logps/chosen"])
    _close((sums["rejected_logps"] / sums["rejected_lengths"]).mean(), trl_metrics["logps/rejected"])


# ------------------------------------------------------------------------------------ conservative dpo


@pytest.mark.parametrize("label_smoothing", [0.2, 0.45])
@FAST
@given(seed=seeds, B=batch_sizes, beta=betas)
def test_conservative_dpo_matches_cpo_loss_on_log_ratios(label_smoothing, seed, B, beta):
    # TRL 1.16's DPOTrainer "sigmoid" ignores label_smoothing; CPOTrainer.cpo_loss's "sigmoid" with
    # label_smoothing fed the log-ratios h = A - R is exactly conservative DPO.
    A_w, A_l, T_w, T_l, gen = _pair_sums(seed, B)
    R_w = A_w - 5 * torch.randn(B, generator=gen, dtype=A_w.dtype).abs()  # sums of log-probs: <= 0
    R_l = A_l - 5 * torch.randn(B, generator=gen, dtype=A_w.dtype).abs()
    losses, r_w, r_l = CPOTrainer.cpo_loss(_fake_cpo("sigmoid", beta, label_smoothing), A_w - R_w, A_l - R_l)
    out = adadpo.preference_loss("dpo", chosen_logps=A_w, rejected_logps=A_l, chosen_lengths=T_w,
                                 rejected_lengths=T_l, ref_chosen_logps=R_w, ref_rejected_logps=R_l,
                                 beta=beta, label_smoothing=label_smoothing)
    _close(out.losses, losses, torch.float64)
    _close(out.loss, losses.mean(), torch.float64)
    _close(out.chosen_rewards, r_w, torch.float64)
    _close(out.rejected_rewards, r_l, torch.float64)


# ------------------------------------------------------------------------------------------------ orpo


def _fake_orpo(beta: float) -> SimpleNamespace:
    fake = SimpleNamespace(
        beta=beta, accelerator=_accelerator(), is_encoder_decoder=False, padding_value=0, aux_loss_enabled=False,
        concatenated_inputs=ORPOTrainer.concatenated_inputs, get_batch_logps=ORPOTrainer.get_batch_logps,
    )
    fake.odds_ratio_loss = MethodType(ORPOTrainer.odds_ratio_loss, fake)
    fake.concatenated_forward = MethodType(ORPOTrainer.concatenated_forward, fake)
    return fake


@FAST
@given(seed=seeds, B=batch_sizes, beta=betas)
def test_orpo_per_pair_matches_odds_ratio_loss(seed, B, beta):
    # TRL casts to float32 inside odds_ratio_loss, so compare in float32. abar spans both branches of
    # log1mexp (threshold -log 2).
    A_w, A_l, T_w, T_l, _ = _pair_sums(seed, B, dtype=torch.float32)
    abar_w, abar_l = A_w / T_w.float(), A_l / T_l.float()
    losses, r_w, r_l, log_odds_ratio, log_odds_chosen = ORPOTrainer.odds_ratio_loss(_fake_orpo(beta), abar_w, abar_l)
    out = adadpo.preference_loss("orpo", chosen_logps=A_w, rejected_logps=A_l, chosen_lengths=T_w,
                                 rejected_lengths=T_l, beta=beta)
    # TRL's sign convention: total = nll - losses.mean(), so its per-pair term is minus adadpo's.
    _close(out.losses, -losses)
    _close(out.chosen_rewards, r_w)
    _close(out.rejected_rewards, r_l)
    mag = _magnitude(abar_w, abar_l, torch.log(-torch.expm1(abar_w)), torch.log(-torch.expm1(abar_l)))
    _close(out.metrics["log_odds_ratio"], log_odds_ratio, scale=mag)
    _close(out.metrics["log_odds_chosen"], log_odds_chosen, scale=mag)
    # TRL's total with adadpo's (response-only) NLL in place of TRL's prompt-including one.
    _close(out.loss, -A_w.sum() / T_w.sum() - losses.mean())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("B, Tc, Tr", [(1, 5, 5), (3, 9, 6), (4, 7, 12)])
def test_orpo_end_to_end_one_token_prompt_matches_get_batch_loss_metrics(seed, B, Tc, Tr):
    # With a one-token prompt the shift drops the prompt token, so TRL's "prompt + response" NLL covers
    # exactly the response tokens: the only setting where the two NLL conventions coincide.
    gen = torch.Generator().manual_seed(200 + seed)
    batch, logits = _preference_batch(gen, B, Tc, Tr, V=23, prompt_len=1)
    beta = 0.05 + seed / 3
    trl_loss, trl_metrics = ORPOTrainer.get_batch_loss_metrics(_fake_orpo(beta), _fake_lm(logits), batch)

    sums = _adadpo_sums(batch, logits)
    out = adadpo.preference_loss("orpo", beta=beta, **sums)
    _close(out.loss, trl_loss)
    _close(out.nll, trl_metrics["nll_loss"])
    abar_w, abar_l = sums["chosen_logps"] / sums["chosen_lengths"], sums["rejected_logps"] / sums["rejected_lengths"]
    mag = _magnitude(abar_w, abar_l, torch.log(-torch.expm1(abar_w)), torch.log(-torch.expm1(abar_l)))
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "log_odds_ratio", "log_odds_chosen"):
        _close(out.metrics[key], trl_metrics[key], scale=mag)
    _close(out.metrics["rewards/accuracies"], trl_metrics["rewards/accuracies"])
    # TRL logs averaged log-probs for ORPO, adadpo logs sums (documented); compare the averages.
    _close((sums["chosen_logps"] / sums["chosen_lengths"]).mean(), trl_metrics["logps/chosen"])
    _close((sums["rejected_logps"] / sums["rejected_lengths"]).mean(), trl_metrics["logps/rejected"])


# ------------------------------------------------------------------------------------------ log-probs


def _logps_case(seed: int, B: int, T: int, V: int, dtype: torch.dtype, allow_empty: bool):
    gen = torch.Generator().manual_seed(seed)
    response, _ = _spans(gen, B, T)
    if allow_empty:  # some rows with no counted token at all (sum 0 on both sides)
        response &= torch.rand(B, 1, generator=gen) > 0.25
    labels = torch.randint(0, V, (B, T), generator=gen).masked_fill(~response, -100)
    logits = (4 * torch.randn(B, T, V, generator=gen)).to(dtype)
    return logits, labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("chunk_size", [None, 3])
@FAST
@given(seed=seeds, B=batch_sizes, T=st.integers(min_value=2, max_value=16), V=st.integers(min_value=2, max_value=300))
def test_sequence_logps_matches_get_batch_logps(dtype, chunk_size, seed, B, T, V):
    logits, labels = _logps_case(seed, B, T, V, dtype, allow_empty=True)
    ours = adadpo.sequence_logps(logits, labels, chunk_size=chunk_size)
    # adadpo accumulates in float32; compare bf16 against TRL on the upcast logits.
    ref_logits = logits.float() if dtype == torch.bfloat16 else logits
    trl_sum = CPOTrainer.get_batch_logps(ref_logits, labels, average_log_prob=False)
    assert ours.logps.dtype == torch.float32
    _close(ours.logps, trl_sum)

    nonempty = ours.lengths > 0
    assert torch.equal(nonempty, (labels[:, 1:] != -100).any(1))
    if nonempty.any():
        trl_avg = CPOTrainer.get_batch_logps(ref_logits[nonempty], labels[nonempty], average_log_prob=True)
        _close(ours.logps[nonempty] / ours.lengths[nonempty], trl_avg)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_sequence_logps_gradient_matches_get_batch_logps(seed, chunk_size):
    B, T, V = 4, 10, 50
    logits, labels = _logps_case(seed, B, T, V, torch.float32, allow_empty=False)
    weights = torch.randn(B, generator=torch.Generator().manual_seed(seed))
    ours = logits.clone().requires_grad_(True)
    theirs = logits.clone().requires_grad_(True)
    (adadpo.sequence_logps(ours, labels, chunk_size=chunk_size).logps * weights).sum().backward()
    (CPOTrainer.get_batch_logps(theirs, labels, average_log_prob=False) * weights).sum().backward()
    assert theirs.grad.abs().sum() > 0
    _close(ours.grad, theirs.grad)
