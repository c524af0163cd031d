"""The core API refuses what it cannot compute with, in one line naming the argument: every tensor argument of
:class:`adadpo.PairLogps` (and so of ``preference_loss``'s keywords) against each kind of tensor that holds no
usable values, ``LossSpec``'s flags given as something else than a bool, and ``PairLogps.cat`` misused."""

from __future__ import annotations

import pytest
import torch

from adadpo import LossSpec, PairLogps, preference_loss

B = 3
GOOD = {
    "chosen_logps": torch.tensor([-4.0, -9.0, -2.5]),
    "rejected_logps": torch.tensor([-6.0, -5.0, -7.0]),
    "chosen_lengths": torch.tensor([4, 6, 2]),
    "rejected_lengths": torch.tensor([3, 5, 8]),
    "ref_chosen_logps": torch.tensor([-5.0, -8.0, -3.0]),
    "ref_rejected_logps": torch.tensor([-5.5, -6.0, -6.5]),
    "pair_weights": torch.tensor([0.5, 1.0, 0.25]),
    "raw_chosen_logps": torch.tensor([-4.5, -9.5, -2.0]),
}
#: Kinds of tensor that hold no usable value for any field, by name: (tensor, what the message must say).
BAD = {
    "bool": (torch.tensor([True, False, True]), "torch.bool"),
    "complex": (torch.tensor([-1.0, -2.0, -3.0], dtype=torch.complex64), "complex64"),
    "meta": (torch.empty(B, device="meta"), "meta device"),
    "2-D": (torch.zeros(B, 1), r"shape \(3, 1\)"),
    "empty": (torch.zeros(0), r"shape \(0,\)"),
    "wrong length": (torch.zeros(B + 1), r"shape \(4,\)"),
    "a list": ([-1.0, -2.0, -3.0], "must be a torch.Tensor"),
}
CASES = [(field, kind) for field in GOOD for kind in BAD]


#: The fields ``preference_loss`` also takes as keywords (the WPO and LD-DPO extras come in a PairLogps).
KEYWORDS = list(GOOD)[:6]


@pytest.mark.parametrize(("field", "kind"), CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_every_tensor_argument_refuses_every_bad_kind_in_one_line(field, kind):
    value, says = BAD[kind]
    builds = [lambda: PairLogps(**{**GOOD, field: value})]
    if field in KEYWORDS:
        builds.append(lambda: preference_loss("dpo", **{**{k: GOOD[k] for k in KEYWORDS}, field: value}))
    for build in builds:
        with pytest.raises(ValueError, match=says) as err:
            build()
        message = str(err.value)
        assert field in message and "\n" not in message, message


def test_the_good_fields_build_and_give_a_finite_loss():
    out = preference_loss(LossSpec("dpo", use_weighting=True, debug=True), PairLogps(**GOOD))
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("flag", ["debug", "use_weighting"])
@pytest.mark.parametrize("value", ["no", "False", 0, 1, None, [True]])
def test_loss_spec_flags_are_bools(flag, value):
    with pytest.raises(ValueError, match=rf"^{flag}={value!r} must be True or False$".replace("[", r"\[")):
        LossSpec("dpo", **{flag: value})
    assert getattr(LossSpec("dpo", **{flag: False}), flag) is False


def test_pair_logps_cat_refuses_an_empty_list_and_mixed_parts():
    with pytest.raises(ValueError, match="non-empty list of PairLogps, got an empty list"):
        PairLogps.cat([])
    plain = PairLogps(*(GOOD[k] for k in ("chosen_logps", "rejected_logps", "chosen_lengths", "rejected_lengths")))
    with_ref = PairLogps(**{k: GOOD[k] for k in list(GOOD)[:6]})
    with pytest.raises(ValueError, match="part 1 sets .*ref_chosen_logps.* but part 0 sets"):
        PairLogps.cat([plain, with_ref])
    with pytest.raises(ValueError, match=r"got \['PairLogps', 'Tensor'\]"):
        PairLogps.cat([plain, GOOD["chosen_logps"]])
    both = PairLogps.cat([with_ref, with_ref])
    assert both.chosen_logps.shape == (2 * B,) and torch.equal(both.ref_rejected_logps[B:], GOOD["ref_rejected_logps"])
