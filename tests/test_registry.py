"""The loss registry (adadpo.core.registry): one declaration per loss, and what derives from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import adadpo
from adadpo.core import registry
from adadpo.core.registry import LOSSES, REGISTRY, TRL_LOSS_TYPES, LossDef, register_loss

DOCS = Path(__file__).resolve().parents[1] / "docs" / "method.md"
KIND = {"margin": "margin", "two-sided": "sides", None: "batch"}


def test_families_and_trl_names_are_views_of_one_registry():
    assert list(LOSSES) == ["dpo", "rdpo", "ipo", "simpo", "cpo", "orpo"]
    assert adadpo.LOSSES is LOSSES and adadpo.LossFamily is LossDef
    assert all(REGISTRY[n] is d for n, d in {**LOSSES, **TRL_LOSS_TYPES}.items())
    assert TRL_LOSS_TYPES["ipo"] is LOSSES["ipo"]  # one loss under both names
    assert registry.NATIVE_LOSS_TYPES == {"dpo": "sigmoid", "ipo": "ipo"}
    assert registry.reference_based() == "dpo, rdpo or ipo" and registry.reference_free() == "simpo, cpo or orpo"


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
        register_loss(LossDef("unexplained", LOSSES["dpo"].term, balanced=None, trl=True))
    assert "unexplained" not in REGISTRY


def test_the_docs_table_of_trl_loss_types_matches_the_registry():
    """docs/method.md section 8.1 lists every TRL loss type with the kind of its balanced form."""
    rows = dict(re.findall(r"^\| `(\w+)` \| (margin|sides|batch) \|", DOCS.read_text(), flags=re.M))
    assert rows == {name: KIND[d.balanced] for name, d in TRL_LOSS_TYPES.items()}


def test_the_model_card_cites_each_family_from_the_registry():
    from adadpo.trl.modelcard import PAPERS

    assert PAPERS == {name: tuple(d.paper) for name, d in LOSSES.items()}
    assert PAPERS["simpo"][2] == "2405.14734"
