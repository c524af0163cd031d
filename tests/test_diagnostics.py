"""The imbalance diagnostic on pairs whose log rho is known in closed form."""

from __future__ import annotations

import json

import pytest
import torch

from adadpo import gradient_imbalance, preference_loss


def test_known_distribution_dpo_token_level():
    # abar_w - abar_l = 0, 1, 2, 3, -1  ->  log rho exactly these (DPO, token level)
    T = torch.tensor([10.0, 4.0, 8.0, 5.0, 2.0])
    gaps = torch.tensor([0.0, 1.0, 2.0, 3.0, -1.0], dtype=torch.float64)
    abar_l = torch.tensor([-2.0, -3.0, -2.5, -4.0, -1.0], dtype=torch.float64)
    A_l = abar_l * T
    A_w = (abar_l + gaps) * T
    rep = gradient_imbalance("dpo", chosen_logps=A_w, rejected_logps=A_l, chosen_lengths=T, rejected_lengths=T,
                             ref_chosen_logps=A_w * 0, ref_rejected_logps=A_l * 0, kappas=(2.0, 10.0, 100.0))
    assert torch.allclose(rep.log_rho, gaps, atol=1e-12)
    assert rep.mean == pytest.approx(1.0)
    assert rep.rejected_dominant == pytest.approx(3 / 5)
    assert rep.quantiles((0.5,))[0.5] == pytest.approx(1.0)
    # |log rho| > log 2 = 0.69: gaps 1, 2, 3, -1 -> 4 of 5; > log 10 = 2.30: only 3; > log 100: none
    assert rep.clip_fractions == {2.0: pytest.approx(0.8), 10.0: pytest.approx(0.2), 100.0: 0.0}
    text = str(rep)
    assert "5 pairs" in text and "kappa=10: 20.0%" in text and "mean +1.000" in text
    json.dumps(rep.summary())


def test_agrees_with_the_loss_metric_and_respects_level_and_reference():
    g = torch.Generator().manual_seed(0)
    T_w, T_l = torch.randint(1, 30, (16,), generator=g).double(), torch.randint(1, 30, (16,), generator=g).double()
    A_w, A_l = -torch.rand(16, generator=g, dtype=torch.float64) * T_w, -2 * torch.rand(16, generator=g, dtype=torch.float64) * T_l
    R_w, R_l = A_w - 0.3, 0.5 * A_l  # sums of log-probs: <= 0
    kw = dict(chosen_logps=A_w, rejected_logps=A_l, chosen_lengths=T_w, rejected_lengths=T_l)
    rep = gradient_imbalance("simpo", **kw)
    out = preference_loss("simpo", **kw)
    assert rep.mean == pytest.approx(out.metrics["balance/log_rho"].item(), rel=1e-12)
    seq = gradient_imbalance("ipo", **kw, ref_chosen_logps=R_w, ref_rejected_logps=R_l, level="sequence", use_reference=True)
    expected = (A_w - R_w) - (A_l - R_l) + torch.log(T_w / T_l)
    assert torch.allclose(seq.log_rho, expected, atol=1e-12)
    assert seq.summary()["level"] == "sequence" and seq.use_reference
