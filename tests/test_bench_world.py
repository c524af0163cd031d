"""Every registered world implements the World interface, and the registry is the only way to a world."""

from __future__ import annotations

import dataclasses
import re

import pytest

from adadpo.bench.run import Budget
from adadpo.bench.world import WORLDS, World, get_world


@pytest.mark.parametrize("name", list(WORLDS))
def test_every_registered_world_implements_the_interface(name):
    world = get_world(name)
    assert isinstance(world, World) and world.name == name and world.title
    config, budget = world.config_cls(), world.budget_cls()
    assert dataclasses.is_dataclass(config) and re.fullmatch(r"[0-9a-f]{12}", config.key())
    assert isinstance(budget, Budget)
    for member in ("build", "run", "evaluate", "threads", "describe", "examples_markdown", "examples_text"):
        assert callable(getattr(world, member)), member
    assert world.threads(2) >= 1 and isinstance(world.examples_markdown([], []), str)


def test_the_committed_worlds_keep_their_keys():
    """The keys the committed results and the shipped snapshot carry (docs/results): a world's default settings
    are its results' identity."""
    assert get_world("oracle").config_cls().key() == "73752b336d39"
    assert get_world("smollm2").config_cls().key() == "bcb7ad44de71"  # truth v4, cap 256: world A of PLAN.md, shipped


def test_an_unknown_world_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"world kind 'nope': expected one of \['oracle', 'smollm2'\]"):
        get_world("nope")
