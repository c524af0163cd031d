"""TRL 1.16's loss options (every ``loss_type``, weighted lists, WPO, LD-DPO, f-divergences) in adadpo.

- core: :func:`adadpo.preference_loss` with TRL's loss types against TRL's own ``DPOTrainer._compute_loss``
  (called unbound with a fake trainer and fused head, ``test_trl_parity._trl_dpo``) on random batches;
- trainer: ``AdaDPOTrainer(balance=False)`` against stock ``DPOTrainer`` on the same tiny model and data, per-step
  losses, logged metrics and final weights;
- balance: the properties of ``test_balance_properties.py`` for the TRL losses that have a balanced form
  (exact balance unclipped, value kept under ``placement="gradient"``, zero exponents give the plain loss);
- config: the ``loss`` / ``loss_type`` rule and the refusals of ``balance``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny import TRAINER_ARGS
from trl import DPOConfig, DPOTrainer
from trl_cases import _close, _dpo_case, _magnitude, _trl_dpo

import adadpo
from adadpo import Balance, LossSpec, PairLogps, TokenLogps
from adadpo.core import terms
from adadpo.core.losses import preference_loss
from adadpo.core.registry import TRL_LOSS_TYPES as LOSS_TYPES
from adadpo.trl import AdaDPOConfig, AdaDPOTrainer
from adadpo.trl.backends import TrlFusedBackend
from conftest import pair_batches
from reference import log_p_table

SMOOTHING = {"exo_pair": 1e-3, "robust": 0.1, "aot": 0.1, "aot_unpaired": 0.1}

#: Every option of DPOConfig that selects or shapes the loss, as DPOConfig keywords.
OPTIONS = {
    **{t: dict(loss_type=t, **({"label_smoothing": SMOOTHING[t]} if t in SMOOTHING else {})) for t in LOSS_TYPES},
    "sigmoid+sft": dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5]),
    "mpo": dict(loss_type=["sigmoid", "bco_pair", "sft"], loss_weights=[0.8, 0.2, 1.0]),
    "discopop_tau": dict(loss_type="discopop", discopop_tau=0.3),
    "wpo": dict(use_weighting=True),
    # (stock TRL 1.16 fails on WPO with hinge or sft: it scales their per-pair losses in place, which autograd
    # refuses after relu and torch refuses on the expanded sft loss; adadpo trains both)
    "wpo_ipo+bco_pair": dict(loss_type=["ipo", "bco_pair"], loss_weights=[1.0, 0.5], use_weighting=True),
    "ld": dict(ld_alpha=0.5),
    "ld_ipo+sft": dict(loss_type=["ipo", "sft"], loss_weights=[1.0, 0.3], ld_alpha=0.2),
    "forward_kl": dict(f_divergence_type="forward_kl"),
    "js_divergence": dict(f_divergence_type="js_divergence"),
    "alpha_divergence": dict(f_divergence_type="alpha_divergence"),
    "alpha_divergence_ipo": dict(loss_type="ipo", f_divergence_type="alpha_divergence", f_alpha_divergence_coef=2.0),
    "js_robust": dict(loss_type="robust", label_smoothing=0.2, f_divergence_type="js_divergence"),
    # an unchanged TRL config with label_smoothing: stock sigmoid ignores it, and so does adadpo unless `loss` is set
    "sigmoid_label_smoothing": dict(label_smoothing=0.1),
}

#: The shared fixtures' settings (tests/conftest.py).
PAIRS = (24, 0)


def _spec(options: dict, balance: Balance | None = None, beta: float = 0.1) -> LossSpec:
    """The :class:`LossSpec` of TRL's options: a list of TRL's loss types, with TRL's options."""
    o = dict(options)
    o.pop("ld_alpha", None)
    types = o.pop("loss_type", "sigmoid")
    types = [types] if isinstance(types, str) else types
    takes = {p for t in types for p in LOSS_TYPES[t].params}
    if "label_smoothing" not in takes:
        o.pop("label_smoothing", None)  # TRL's other loss types ignore it
    return LossSpec(types, weights=o.pop("loss_weights", None), beta=beta, balance=balance, **o)


def _fake_attrs(options: dict) -> dict:
    """The DPOTrainer attributes ``_compute_loss`` reads for these options."""
    types = options.get("loss_type", "sigmoid")
    types = [types] if isinstance(types, str) else types
    return dict(loss_types=types, loss_weights=options.get("loss_weights") or [1.0] * len(types),
                label_smoothing=options.get("label_smoothing", 0.0), ld_alpha=options.get("ld_alpha"),
                f_divergence_type=options.get("f_divergence_type", "reverse_kl"),
                f_alpha_divergence_coef=options.get("f_alpha_divergence_coef", 0.5),
                use_weighting=options.get("use_weighting", False),
                args=SimpleNamespace(discopop_tau=options.get("discopop_tau", 0.05)))


# ------------------------------------------------------------------------------------ core vs TRL's code


@pytest.mark.parametrize("name", list(OPTIONS))
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), B=st.integers(1, 6), beta=st.sampled_from([0.05, 0.5, 2.0]),
       dtype=st.sampled_from([torch.float64, torch.float32]))
def test_core_matches_dpotrainer_compute_loss(name, seed, B, beta, dtype):
    options = OPTIONS[name]
    if options.get("f_divergence_type") == "alpha_divergence":
        dtype = torch.float32  # TRL's alpha-divergence clamp has no float64 entry
    inputs, raw, kw = _dpo_case(seed, B, dtype)
    counted = inputs["completion_mask"][:, 1:].bool()
    lssp = None
    if options.get("use_weighting"):
        lssp = -3 * torch.rand(raw.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=dtype)
    trl_loss, trl_metrics = _trl_dpo("sigmoid", beta, inputs, raw, lssp, **_fake_attrs(options))

    tokens = TokenLogps((raw * counted)[counted], counted.nonzero()[:, 0], 2 * B)
    alpha = options.get("ld_alpha")
    if alpha is None:
        A_w, A_l = kw["chosen_logps"], kw["rejected_logps"]
    else:
        A_w, A_l = tokens.desensitized(alpha).logps.chunk(2)
        assert A_w.dtype == dtype
    weights = None
    if lssp is not None:
        weights = TrlFusedBackend._wpo_weights(SimpleNamespace(log_sum_sq_probs=lssp), raw * counted, counted)
    raw_w = kw["chosen_logps"] if alpha is not None else None
    pairs = PairLogps(A_w, A_l, kw["chosen_lengths"], kw["rejected_lengths"], kw["ref_chosen_logps"],
                      kw["ref_rejected_logps"], pair_weights=weights, raw_chosen_logps=raw_w)
    out = preference_loss(_spec(options, beta=beta), pairs)

    # TRL holds exo_pair's eps as a float32 tensor, so its log(eps) is float32 whatever the inputs' dtype
    _close(out.loss, trl_loss, torch.float32 if "exo_pair" in str(options) else dtype, scale=_magnitude(trl_loss))
    scale = _magnitude(A_w, A_l, kw["ref_chosen_logps"], kw["ref_rejected_logps"])
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"):
        _close(out.metrics[key], trl_metrics[key], dtype, scale=scale)
    _close(out.metrics["rewards/accuracies"], trl_metrics["rewards/accuracies"])


def test_sigmoid_and_ipo_are_adadpos_own_terms():
    """TRL's sigmoid and ipo are computed by adadpo's dpo and ipo pairwise terms, alone and in a list."""
    spec = _spec(dict(loss_type=["sigmoid", "ipo", "hinge"]))
    assert [d.term for d in (LOSS_TYPES["sigmoid"], LOSS_TYPES["ipo"])] == [terms.sigmoid, adadpo.LOSSES["ipo"].term]
    assert LOSS_TYPES["sigmoid"].same_as == "dpo" and LOSS_TYPES["ipo"] is adadpo.LOSSES["ipo"]
    assert spec.names == ("sigmoid", "ipo", "hinge")


# --------------------------------------------------------------------------------- trainer vs stock


def _train(cls, config, model_dir, tokenizer, dataset, out, **kw):
    args = config(str(out), **{**TRAINER_ARGS, "max_steps": 4, **kw})
    trainer = cls(model=str(model_dir), args=args, train_dataset=dataset, processing_class=tokenizer)
    losses, compute = [], trainer.compute_loss

    def recording(*a, **k):
        loss = compute(*a, **k)
        losses.append(loss.item())
        return loss

    trainer.compute_loss = recording
    trainer.train()
    return trainer, losses


METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
           "logps/rejected", "entropy", "logits/chosen", "logits/rejected", "mean_token_accuracy", "num_tokens")


@pytest.mark.parametrize("name", list(OPTIONS))
def test_trainer_equals_stock_dpotrainer(name, model_dir, tokenizer, dataset, tmp_path):
    options = OPTIONS[name]
    stock, stock_losses = _train(DPOTrainer, DPOConfig, model_dir, tokenizer, dataset, tmp_path / "stock", **options)
    ours, our_losses = _train(AdaDPOTrainer, AdaDPOConfig, model_dir, tokenizer, dataset, tmp_path / "ours", **options)
    assert len(our_losses) == len(stock_losses) == 4
    assert our_losses == pytest.approx(stock_losses, rel=1e-5, abs=1e-7)
    for key in METRICS:
        ours_v = [h[key] for h in ours.state.log_history if key in h]
        stock_v = [h[key] for h in stock.state.log_history if key in h]
        assert len(ours_v) == len(stock_v) == 4 and ours_v == pytest.approx(stock_v, rel=1e-4, abs=1e-6), key
    for (n, p), (_, q) in zip(ours.model.named_parameters(), stock.model.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=n)
    backend = ours.logps_backend_for(ours.model).name
    assert backend == ("trl_fused" if options.get("use_weighting") else "chunked")  # WPO needs TRL's fused head
    native = name in ("sigmoid", "ipo", "ld", "sigmoid_label_smoothing")
    trl_options = {"f_divergence_type", "use_weighting", "loss_weights"} & ours.loss_spec.params.keys()
    assert (ours.loss_spec.loss in adadpo.LOSSES and not trl_options) == native  # resolved to adadpo's family


# ------------------------------------------------------------------------------------------- balance

BALANCED = [t for t, lt in LOSS_TYPES.items() if lt.balanced is not None]
F_DIVS = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")


def _balanced_case(loss_type, batch, a_w, a_l, balance, f_div="reverse_kl"):
    sums = batch.sums(a_w, a_l)
    pairs = PairLogps(**sums, **batch.refs())
    options = dict(loss_type=loss_type, label_smoothing=SMOOTHING.get(loss_type, 0.0))
    if LOSS_TYPES[loss_type].f_divergence:
        options["f_divergence_type"] = f_div
    return preference_loss(_spec(options, balance=balance, beta=batch.beta), pairs)


def _placements(loss_type):
    return ("margin", "gradient") if LOSS_TYPES[loss_type].balanced == "margin" else ("gradient",)


COMBOS = [(t, level, use_ref, place) for t in BALANCED for level in ("token", "sequence") for use_ref in (False, True)
          for place in _placements(t)]


@pytest.mark.parametrize("loss_type,level,use_ref,placement", COMBOS)
@settings(max_examples=10, deadline=None)
@given(batch=pair_batches(max_len=6, max_scale=0.5),
       normalize=st.sampled_from(["sum", "geometric", "rejected", "chosen"]), f_div=st.sampled_from(F_DIVS))
def test_exact_balance_unclipped(loss_type, level, use_ref, placement, batch, normalize, f_div):
    """|dL/dp_t| equal on both sides for every token, on the balanced probability (clip off)."""
    a_w, a_l = batch.leaves()
    bal = Balance(level=level, use_reference=use_ref, clip=math.inf, normalize=normalize, placement=placement)
    out = _balanced_case(loss_type, batch, a_w, a_l, bal, f_div)
    g_w, g_l = torch.autograd.grad(out.losses.sum(), (a_w, a_l))
    d = {k: v.detach() for k, v in {**batch.sums(a_w, a_l), **batch.refs()}.items()}
    lp_w = log_p_table(d["chosen_logps"], batch.T_w, d["ref_chosen_logps"], level=level, use_reference=use_ref)
    lp_l = log_p_table(d["rejected_logps"], batch.T_l, d["ref_rejected_logps"], level=level, use_reference=use_ref)
    checked = 0
    for b in range(a_w.shape[0]):
        gw, gl = abs(g_w[b, 0].item()), abs(g_l[b, 0].item())
        if gw == 0 and gl == 0:
            assert loss_type == "hinge" or f_div == "alpha_divergence", (b, loss_type)  # flat beyond the margin
            continue
        assert math.isclose(math.log(gw) - lp_w[b].item(), math.log(gl) - lp_l[b].item(), rel_tol=1e-9, abs_tol=1e-9)
        checked += 1
    assert checked or loss_type == "hinge"


@pytest.mark.parametrize("loss_type", BALANCED)
@settings(max_examples=10, deadline=None)
@given(batch=pair_batches())
def test_gradient_placement_keeps_values_and_scales_gradients(loss_type, batch):
    a_w0, a_l0 = batch.leaves()
    base = _balanced_case(loss_type, batch, a_w0, a_l0, None)
    gb_w, gb_l = torch.autograd.grad(base.losses.sum(), (a_w0, a_l0))
    a_w, a_l = batch.leaves()
    out = _balanced_case(loss_type, batch, a_w, a_l, Balance(placement="gradient", clip=10.0))
    g_w, g_l = torch.autograd.grad(out.losses.sum(), (a_w, a_l))
    assert torch.allclose(out.losses, base.losses, rtol=1e-12, atol=0)
    for k in ("rewards/chosen", "rewards/margins", "logps/chosen"):
        assert torch.equal(out.metrics[k], base.metrics[k])
    assert torch.allclose(g_w, out.coef_chosen[:, None] * gb_w, rtol=1e-10, atol=1e-300)
    assert torch.allclose(g_l, out.coef_rejected[:, None] * gb_l, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("loss_type", BALANCED)
@settings(max_examples=8, deadline=None)
@given(batch=pair_batches(), clip=st.sampled_from([1.5, 10.0, math.inf]))
def test_zero_exponents_give_the_plain_loss_exactly(loss_type, batch, clip):
    results = []
    for bal in (None, Balance(alpha_chosen=0.0, alpha_rejected=0.0, clip=clip, placement="gradient"),
                Balance(clip=1.0, placement=_placements(loss_type)[0])):
        a_w, a_l = batch.leaves()
        out = _balanced_case(loss_type, batch, a_w, a_l, bal)
        results.append((out.loss.detach(), *torch.autograd.grad(out.loss, (a_w, a_l))))
    for other in results[1:]:
        for x, y in zip(results[0], other):
            assert torch.equal(x, y)


@pytest.mark.parametrize("options", [dict(loss_type="hinge"), dict(loss_type="robust", label_smoothing=0.1),
                                     dict(loss_type=["sigmoid", "sft"]), dict(loss_type="nca_pair"),
                                     dict(loss_type="apo_zero"), dict(loss_type="sppo_hard"),
                                     dict(loss_type="sigmoid_norm", f_divergence_type="js_divergence")],
                         ids=lambda o: str(o["loss_type"]))
def test_balanced_trl_losses_train(options, model_dir, tokenizer, dataset, tmp_path):
    first = options["loss_type"] if isinstance(options["loss_type"], str) else options["loss_type"][0]
    placement = "gradient" if LOSS_TYPES[first].balanced == "two-sided" else "margin"
    trainer, losses = _train(AdaDPOTrainer, AdaDPOConfig, model_dir, tokenizer, dataset, tmp_path, balance=True,
                             balance_placement=placement, max_steps=8, learning_rate=1e-2, **options)
    assert all(math.isfinite(x) for x in losses)
    assert min(losses[4:]) < losses[0]  # it trained
    logged = [h for h in trainer.state.log_history if "balance/coef_chosen" in h]
    assert len(logged) == 8 and any(h["balance/log_rho"] != 0 for h in logged)
    evaluated = trainer.evaluate(dataset)  # no_grad: the two-sided slopes are still taken
    assert math.isfinite(evaluated["eval_loss"]) and "eval_balance/coef_chosen" in evaluated


def test_wpo_with_hinge_and_sft_trains_where_stock_fails(model_dir, tokenizer, dataset, tmp_path):
    """Stock TRL 1.16 scales the per-pair losses by WPO's weights in place, which autograd refuses after relu
    (hinge) and torch refuses on sft's expanded loss; adadpo computes the same loss out of place."""
    options = dict(loss_type=["hinge", "sft"], loss_weights=[1.0, 0.5], use_weighting=True)
    with pytest.raises(RuntimeError):
        _train(DPOTrainer, DPOConfig, model_dir, tokenizer, dataset, tmp_path / "stock", **options)
    ours, losses = _train(AdaDPOTrainer, AdaDPOConfig, model_dir, tokenizer, dataset, tmp_path / "ours", **options)
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert math.isfinite(ours.evaluate(dataset)["eval_loss"])


# -------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(("kwargs", "expected"), [
    (dict(), ("dpo", LossSpec)),
    (dict(loss_type="ipo"), ("ipo", LossSpec)),
    (dict(loss="ipo"), ("ipo", LossSpec)),
    (dict(loss="ipo", loss_type=["ipo"]), ("ipo", LossSpec)),
    (dict(loss="simpo"), ("simpo", LossSpec)),
    (dict(loss_type="hinge"), ("hinge", LossSpec)),
    (dict(loss_type=["sigmoid", "sft"]), ("sigmoid+sft", LossSpec)),
    (dict(use_weighting=True), ("sigmoid", LossSpec)),
    (dict(loss="ipo", f_divergence_type="js_divergence"), ("ipo", LossSpec)),
    (dict(loss_type="ipo", label_smoothing=0.1), ("ipo", LossSpec)),  # TRL's ipo ignores label_smoothing
])
def test_loss_and_loss_type_resolve_to_one_loss(tmp_path, kwargs, expected):
    spec = AdaDPOConfig(str(tmp_path), **{**TRAINER_ARGS, **kwargs}).loss_spec()
    assert (spec.loss, type(spec)) == expected


def test_label_smoothing_is_conservative_dpo_only_when_loss_is_set(tmp_path, caplog):
    """An unchanged TRL config trains as stock (sigmoid ignores label_smoothing; before: conservative DPO), with a
    line saying so; ``loss: dpo`` asks for adadpo's conservative DPO."""
    with caplog.at_level("WARNING", logger="adadpo"):
        stock_like = AdaDPOConfig(str(tmp_path), **TRAINER_ARGS, label_smoothing=0.1).loss_spec()
    assert stock_like.params["label_smoothing"] == 0.0
    assert "label_smoothing=0.1 does nothing with loss_type=['sigmoid'] (stock TRL ignores it too); set loss: dpo" \
        in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="adadpo"):
        conservative = AdaDPOConfig(str(tmp_path), **TRAINER_ARGS, loss="dpo", label_smoothing=0.1).loss_spec()
    assert conservative.params["label_smoothing"] == 0.1 and "label_smoothing" not in caplog.text


@pytest.mark.parametrize(("kwargs", "notice"), [
    (dict(loss_type="nca_pair", balance=True), "balance_placement=gradient, chosen for loss_type 'nca_pair'"),
    (dict(balance_clip=5.0), "balance_clip=5.0 does nothing without balance: true"),
    (dict(balance_placement="gradient", balance_level="sequence"),
     "balance_level='sequence', balance_placement='gradient' does nothing without balance: true"),
    (dict(loss="simpo"), "loss=simpo with beta=0.1 (DPO's default): SimPO's rewards are per-token means"),
])
def test_settings_that_do_nothing_or_were_chosen_are_said(tmp_path, caplog, kwargs, notice):
    with caplog.at_level("WARNING", logger="adadpo"):
        config = AdaDPOConfig(str(tmp_path), **{**TRAINER_ARGS, **kwargs})
    assert notice in caplog.text and len(caplog.records) == 1
    if kwargs.get("loss_type") == "nca_pair":  # before: an error unless balance_placement: gradient was set
        assert config.loss_spec().balance.placement == "gradient"
    caplog.clear()
    with caplog.at_level("WARNING", logger="adadpo"):
        AdaDPOConfig(str(tmp_path), **{**TRAINER_ARGS, "balance": True, "beta": 2.0})  # nothing to say
    assert not caplog.records


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(loss="simpo", loss_type="hinge"), r"loss='simpo' and loss_type=\['hinge'\] name different losses"),
    (dict(loss="ipo", loss_type=["sigmoid", "sft"]), r"loss='ipo' and loss_type=\['sigmoid', 'sft'\] name different"),
    (dict(loss="cpo", use_weighting=True),
     r"use_weighting=True is an option of TRL's losses \(loss_type\) and does not apply to loss='cpo'"),
    (dict(loss="rdpo", length_alpha=0.1, ld_alpha=0.5), r"ld_alpha=0.5 is an option of TRL's losses"),
    (dict(loss_type="hinge", gamma=0.5), r"gamma=0.5 does not apply to loss_type=\['hinge'\]"),
    (dict(ld_alpha=1.5), r"ld_alpha=1.5 is out of range: expected a number in \[0, 1\]"),
    (dict(ld_alpha=0.5, balance=True), r"balance=True does not apply with ld_alpha=0.5: LD-DPO weights"),
    (dict(loss_type="aot", balance=True), r"balance does not apply to loss_type \['aot'\]: it sorts the batch"),
    (dict(loss_type="sft", balance=True), r"balance does not apply to loss_type 'sft' alone"),
    (dict(loss_type=["sigmoid", "hinge"], balance=True),
     r"balance applies to one pairwise loss_type, got \['sigmoid', 'hinge'\]"),
    (dict(loss_type="nca_pair", balance=True, balance_placement="margin"),  # chosen: refused; unset: gradient
     r"loss_type 'nca_pair' gives each side its own slope.*placement='gradient'"),
    (dict(loss_type="exo_pair"), r"loss_type 'exo_pair' needs label_smoothing in \(0, 1\)"),
    (dict(loss_type="nca_pair", f_divergence_type="forward_kl"),
     r"f_divergence_type='forward_kl' does not apply to loss_type \['nca_pair'\]"),
    (dict(loss_type="aot", use_weighting=True), r"use_weighting=True \(WPO\) does not apply to loss_type aot"),
    (dict(loss_type="kto"), r"loss_type='kto' is not one of TRL 1.16's loss types"),
])
def test_contradictions_and_refusals_are_one_line_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        AdaDPOConfig(str(tmp_path), **{**TRAINER_ARGS, **kwargs})
    assert "\n" not in str(err.value)
