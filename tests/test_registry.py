"""The loss registry (adadpo.core.registry): one declaration per loss, and what derives from it."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

import adadpo
import reference
from adadpo.core import registry
from adadpo.core.params import LIMIT, Param
from adadpo.core.registry import LOSSES, REGISTRY, TRL_LOSS_TYPES, LossDef, register_loss
from adadpo.core.spec import LOSS_PARAMS, LossSpec

DOCS = Path(__file__).resolve().parents[1] / "docs" / "method.md"
KIND = {"margin": "margin", "two-sided": "sides", None: "batch"}


def test_families_and_trl_names_are_views_of_one_registry():
    assert list(LOSSES) == [n for n, d in REGISTRY.items() if d.family]
    assert list(TRL_LOSS_TYPES) == [n for n, d in REGISTRY.items() if d.trl]
    assert adadpo.LOSSES is LOSSES and adadpo.LossFamily is LossDef
    assert all(REGISTRY[n] is d for n, d in {**LOSSES, **TRL_LOSS_TYPES}.items())
    assert TRL_LOSS_TYPES["ipo"] is LOSSES["ipo"]  # one loss under both names
    # a family is native when TRL trains it under its own name or a same_as alias, with TRL's defaults
    assert registry.NATIVE_LOSS_TYPES == {"dpo": "sigmoid", "ipo": "ipo"}
    assert registry.reference_based().replace(" or ", ", ").split(", ") == [
        n for n, d in LOSSES.items() if d.needs_reference]
    named = {n: dataclasses.replace(LOSSES["dpo"], name=n) for n in "abc"}
    assert registry.names(lambda d: True, named) == "a, b or c"
    assert registry.names(lambda d: d.name == "b", named) == "b"


def test_the_independent_formulas_cover_every_family():
    """tests/reference.py states its losses' shapes by hand (it shares no code with adadpo): a family registered
    without its formula, or declared unlike it, fails here."""
    assert set(reference.REFERENCE_LOSSES) == {n for n, d in LOSSES.items() if d.needs_reference}
    assert set(reference.MEAN_LOSSES) == {n for n, d in LOSSES.items() if d.mean}
    assert set(reference.FAMILIES) == set(LOSSES)
    assert {n: LOSSES[n].params.get(LOSSES[n].nll_weight, Param("1", 1.0, "")).default for n in reference.NLL_WEIGHTS} \
        == reference.NLL_WEIGHTS and {n for n, d in LOSSES.items() if d.nll_weight} == set(reference.NLL_WEIGHTS)


def test_every_declaration_is_complete():
    for d in REGISTRY.values():
        assert d.balanced in ("margin", "two-sided", None)
        assert d.balanced is not None or d.unbalanced, d.name  # no balanced form: it says why
        assert d.family or d.trl
        for name, p in d.params.items():
            assert p.name == name and p.help
    for d in LOSSES.values():
        assert d.paper is not None, d.name  # the model card cites it


def test_register_loss_refuses_a_taken_name_and_an_unexplained_missing_balance():
    with pytest.raises(ValueError, match="already registered"):
        register_loss(LossDef("dpo", LOSSES["dpo"].term, family=True))
    with pytest.raises(ValueError, match="say why"):
        register_loss(LossDef("unexplained", LOSSES["dpo"].term, shape="batch", trl=True))
    assert "unexplained" not in REGISTRY


def test_the_docs_table_of_trl_loss_types_matches_the_registry():
    """docs/method.md section 8.1 lists every TRL loss type with the kind of its balanced form."""
    rows = dict(re.findall(r"^\| `(\w+)` \| (margin|sides|batch) \|", DOCS.read_text(), flags=re.M))
    assert rows == {name: KIND[d.balanced] for name, d in TRL_LOSS_TYPES.items()}


def test_the_model_card_cites_each_family_from_the_registry():
    from adadpo.trl.modelcard import PAPERS

    assert PAPERS == {name: tuple(d.paper) for name, d in LOSSES.items()}
    assert PAPERS["simpo"][2] == "2405.14734"


# ------------------------------------------------------------------------------ parameters: LossSpec's fields


def test_loss_spec_has_one_keyword_field_per_declared_parameter():
    declared = {name for d in REGISTRY.values() for name in d.params}
    assert set(LOSS_PARAMS) == declared
    fields = {f.name: f for f in dataclasses.fields(LossSpec)}
    for name, param in LOSS_PARAMS.items():
        f = fields[name]
        assert f.kw_only and f.default is None and f.init, name
        assert set(param.takers) == {d.name for d in REGISTRY.values() if name in d.params}
        for taker in param.takers:  # the help names every loss that takes it
            assert taker in f.metadata["help"], (name, taker)


def _outside(p: Param) -> list[float]:
    """Values just outside ``p``'s bounds (the bound itself when it is open), and beyond the limit."""
    out = [LIMIT * 10, -LIMIT * 10, math.nan, math.inf]
    if p.low is not None:
        out.append(p.low if p.open_low else p.low - 1e-6)
    if p.high is not None:
        out.append(p.high if p.open_high else p.high + 1e-6)
    return out


CASES = [(d.name, p) for d in REGISTRY.values() for p in d.params.values()]


@pytest.mark.parametrize(("loss", "param"), CASES, ids=[f"{n}-{p.name}" for n, p in CASES])
def test_every_parameter_is_checked_against_its_declaration(loss, param):
    """Each loss's parameter: its default (or example, when required) builds; a value outside its bounds, too
    large, NaN or infinite is refused with one line naming the parameter and the value; a bool is no number."""
    required = {n: p.example for n, p in REGISTRY[loss].params.items() if p.required}
    spec_loss = loss if REGISTRY[loss].family or not REGISTRY[loss].trl else [loss]
    ok = param.example if param.required or (param.default is not None and not param.holds(param.default)) \
        else param.default
    ok = param.example if ok is None or not param.holds(ok) else ok
    assert LossSpec(spec_loss, **{**required, param.name: ok}).params[param.name] == ok
    for bad in [*_outside(param), True, "0.1"]:
        with pytest.raises(ValueError, match=re.escape(param.name)) as err:
            LossSpec(spec_loss, **{**required, param.name: bad})
        assert "\n" not in str(err.value) and (repr(bad) in str(err.value) or str(bad) in str(err.value))


@pytest.mark.parametrize("loss", [n for n, d in REGISTRY.items() if any(p.required for p in d.params.values())])
def test_a_required_parameter_is_named_with_an_example(loss):
    for name, p in REGISTRY[loss].params.items():
        if p.required:
            with pytest.raises(ValueError, match=rf"needs {name} \(e.g. {name}={p.example:g}\)"):
                LossSpec(loss)


@pytest.mark.parametrize("name", list(LOSS_PARAMS))
def test_a_parameter_no_term_takes_is_refused_unless_neutral(name):
    field = LOSS_PARAMS[name]
    others = [n for n, d in REGISTRY.items() if name not in d.params and not d.params]
    for loss in others[:3]:
        spec_loss = loss if REGISTRY[loss].family or not REGISTRY[loss].trl else [loss]
        if field.neutral is not None:
            assert LossSpec(spec_loss, **{name: field.neutral}).params == {}
        option = "loss" if isinstance(spec_loss, str) else "loss_type"  # named as the caller gave it
        with pytest.raises(ValueError, match=rf"{name}=0.25 does not apply to {option}="):
            LossSpec(spec_loss, **{name: 0.25})


def test_register_loss_refuses_an_inconsistent_parameter_declaration():
    term = LOSSES["dpo"].term
    with pytest.raises(ValueError, match="under the key"):
        register_loss(LossDef("misnamed", term, trl=True, params={"x": Param("y", 1.0, "y")}))
    with pytest.raises(ValueError, match="needs an example"):
        register_loss(LossDef("noexample", term, trl=True, params={"gamma": Param("gamma", None, "g", required=True)}))
    with pytest.raises(ValueError, match="fields were generated already"):
        register_loss(LossDef("newparam", term, trl=True, params={"zeta": Param("zeta", 1.0, "z")}))
    with pytest.raises(ValueError, match="another kind or neutral value"):
        register_loss(LossDef("clash", term, trl=True, params={"gamma": Param("gamma", 1.0, "g", kind=int)}))
    assert not {"misnamed", "noexample", "newparam", "clash"} & set(REGISTRY)
