"""Users' mistakes raise ValueError naming the argument, the value and what was expected."""

from __future__ import annotations

import math
import re

import pytest
import torch

import adadpo
from adadpo import Balance, preference_loss


def kw(**over):
    base = dict(
        chosen_logps=torch.tensor([-4.0, -9.0]),
        rejected_logps=torch.tensor([-6.0, -5.0]),
        chosen_lengths=torch.tensor([4, 6]),
        rejected_lengths=torch.tensor([3, 5]),
        ref_chosen_logps=torch.tensor([-5.0, -8.0]),
        ref_rejected_logps=torch.tensor([-5.5, -6.0]),
    )
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


NOREF = dict(ref_chosen_logps=None, ref_rejected_logps=None)

CASES = [
    ("empty chosen", lambda: preference_loss("dpo", **kw(chosen_lengths=torch.tensor([4, 0]))),
     r"chosen_lengths must be >= 1 .*empty response.*found 0 at index 1"),
    ("empty rejected", lambda: preference_loss("simpo", **kw(rejected_lengths=torch.tensor([0, 0]), **NOREF)),
     r"rejected_lengths must be >= 1 .*found 0 at index 0 \(2 pair\(s\) in all\)"),
    ("shape mismatch", lambda: preference_loss("dpo", **kw(rejected_logps=torch.tensor([-1.0, -2.0, -3.0]))),
     r"rejected_logps has shape \(3,\) but chosen_logps has shape \(2,\)"),
    ("2-D input", lambda: preference_loss("dpo", **kw(chosen_logps=torch.zeros(2, 3)))),
    ("not a tensor", lambda: preference_loss("dpo", **kw(chosen_lengths=[4, 6])),
     r"chosen_lengths must be a torch.Tensor"),
    ("integer logps", lambda: preference_loss("dpo", **kw(rejected_logps=torch.tensor([-6, -5])))),
    ("nan logps", lambda: preference_loss("dpo", **kw(chosen_logps=torch.tensor([-4.0, math.nan]))),
     r"chosen_logps must be finite; found nan at index 1"),
    # values that passed and trained nonsense: log-prob sums above 0, and betas beyond float32's arithmetic
    ("positive logps", lambda: preference_loss("dpo", **kw(chosen_logps=torch.tensor([-4.0, 5.0]))),
     r"chosen_logps must be <= 0 for every pair \(a sum of token log-probabilities\); found 5 at index 1"),
    ("positive ref", lambda: preference_loss("ipo", **kw(ref_chosen_logps=torch.tensor([0.5, -1.0]))),
     r"ref_chosen_logps must be <= 0 for every pair"),
    ("tiny ipo beta", lambda: preference_loss("ipo", **kw(), beta=1e-40),  # before: an infinite loss
     r"beta=1e-40 is outside \[1e-09, 1e\+09\], where the loss stays finite in float32"),
    ("huge beta", lambda: preference_loss("dpo", **kw(), beta=1e300),  # before: loss 0, NaN gradients
     r"beta=1e\+300 is outside \[1e-09, 1e\+09\]"),
    ("huge exponent", lambda: Balance(alpha_chosen=1e300), r"Balance.alpha_chosen=1e\+300 is too large for float32"),
    ("huge gamma", lambda: adadpo.LossSpec("simpo", gamma=1e300), r"gamma=1e\+300 is too large for the loss's float32"),
    ("huge trl beta", lambda: adadpo.LossSpec(["hinge"], beta=1e300), r"beta=1e\+300 is outside"),
    ("inf ref", lambda: preference_loss("ipo", **kw(ref_rejected_logps=torch.tensor([-math.inf, -1.0]))),
     r"ref_rejected_logps must be finite; found -inf at index 0"),
    ("missing reference", lambda: preference_loss("dpo", **kw(**NOREF)),
     r"loss='dpo' needs the reference model's log-probs, but ref_chosen_logps and ref_rejected_logps are missing"),
    ("half a reference", lambda: preference_loss("ipo", **kw(ref_rejected_logps=None)),
     r"ref_rejected_logps is missing"),
    ("reference to a reference-free loss", lambda: preference_loss("orpo", **kw()),
     r"loss='orpo' is reference-free"),
    ("use_reference on a reference-free loss",
     lambda: preference_loss("simpo", **kw(**NOREF), balance=Balance(use_reference=True)),
     r"Balance\(use_reference=True\)\) needs a reference model, but loss='simpo' is reference-free"),
    ("unknown loss", lambda: preference_loss("kto", **kw()),
     rf"loss='kto' is not a known preference loss; expected one of {re.escape(str(list(adadpo.LOSSES)))}"),
    ("unknown normalization", lambda: Balance(normalize="mean"),
     r"Balance.normalize='mean' is not supported; expected one of \['sum', 'geometric', 'rejected', 'chosen'\]"),
    ("unknown level", lambda: Balance(level="tokens"), r"Balance.level='tokens'"),
    ("unknown placement", lambda: Balance(placement="loss"), r"Balance.placement='loss'"),
    ("clip below one", lambda: Balance(clip=0.5), r"Balance.clip=0.5 must be a number >= 1"),
    ("nan exponent", lambda: Balance(alpha_chosen=math.nan), r"Balance.alpha_chosen=nan must be a finite"),
    ("non-bool use_reference", lambda: Balance(use_reference="yes"), r"Balance.use_reference='yes' must be a bool"),
    ("beta", lambda: preference_loss("dpo", **kw(), beta=0.0), r"beta=0.0 must be a finite number > 0"),
    ("rdpo without length_alpha", lambda: preference_loss("rdpo", **kw()),
     r"loss='rdpo' needs length_alpha"),
    ("gamma on dpo", lambda: preference_loss("dpo", **kw(), gamma=1.0),
     r"gamma=1.0 does not apply to loss='dpo'; it takes \['label_smoothing'\]"),
    ("label smoothing on ipo", lambda: preference_loss("ipo", **kw(), label_smoothing=0.1),
     r"label_smoothing=0.1 does not apply to loss='ipo'"),
    ("label smoothing range", lambda: preference_loss("dpo", **kw(), label_smoothing=0.5),
     r"label_smoothing=0.5 must lie in \[0, 0.5\)"),
    ("negative cpo_alpha", lambda: preference_loss("cpo", **kw(**NOREF), cpo_alpha=-1.0), r"cpo_alpha=-1.0 must be >= 0"),
    ("module checks at construction", lambda: adadpo.SimPOLoss(beta=2.0, length_alpha=0.1),
     r"length_alpha=0.1 does not apply to loss='simpo'"),
    ("diagnostic kappas", lambda: adadpo.gradient_imbalance(**kw(), kappas=(0.5,)), r"kappas must all be >= 1"),
]


@pytest.mark.parametrize("name,call,pattern", [c if len(c) == 3 else (*c, None) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_value_error(name, call, pattern):
    with pytest.raises(ValueError) as info:
        call()
    if pattern is not None:
        assert info.match(pattern)
    else:
        assert info.match(r"(chosen_logps|rejected_logps) must be")


def test_overflowing_coefficients_raise_instead_of_nan():
    """clip=inf at sequence level on very long, very unlikely responses: coefficients leave float range."""
    A_w = torch.tensor([-1e4 * 4096.0])
    A_l = torch.tensor([-10.0])
    T = torch.tensor([4096])
    for normalize in ("sum", "geometric", "rejected", "chosen"):
        with pytest.raises(ValueError, match=r"AdaDPO coefficients are not representable .*\(\|log rho\| up to .*Balance.clip=inf"):
            preference_loss("simpo", chosen_logps=A_w, rejected_logps=A_l, chosen_lengths=T, rejected_lengths=T,
                            balance=Balance(level="sequence", clip=math.inf, normalize=normalize))
