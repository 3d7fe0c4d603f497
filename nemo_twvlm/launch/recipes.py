"""Recipes by name, read from the `nemo_twvlm.recipes` entry-point group.

Each entry point is a table `{recipe name: no-argument function returning a config}` registered under
its kind (`pretrain`, `curate`); this repository's `recipes/` folder registers its two tables as the
installed module `nemo_twvlm_recipes` (pyproject.toml), and another package adds recipes by registering
a table under the same kind. Nothing is read until a kind is asked for.
"""
from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import Any, Callable

GROUP = "nemo_twvlm.recipes"

Recipe = Callable[[], Any]


def find_recipes(kind: str) -> dict[str, Recipe]:
    """Every recipe of `kind`, by name (a fresh dict; the recipes themselves return fresh configs)."""
    return dict(_load(kind))


def get_recipe(name: str, kind: str = "pretrain") -> Any:
    """The config recipe `name` of `kind` returns."""
    recipes = find_recipes(kind)
    if name not in recipes:
        raise ValueError(f"recipe {name!r} is not registered; expected one of {sorted(recipes)}")
    return recipes[name]()


@functools.cache
def _load(kind: str) -> tuple[tuple[str, Recipe], ...]:
    # Cached: scanning the installed distributions' entry points costs milliseconds per call.
    tables = sorted(entry_points(group=GROUP, name=kind), key=lambda point: point.value)
    if not tables:
        raise LookupError(f"no {kind!r} recipes under the entry-point group {GROUP!r}: the package is not "
                          "installed (run scripts/setup.sh, or pip install -e .)")
    recipes: dict[str, Recipe] = {}
    for table in tables:
        for name, recipe in table.load().items():
            if name in recipes:
                raise ValueError(f"{kind} recipe {name!r} is registered twice (again by {table.value})")
            recipes[name] = recipe
    return tuple(recipes.items())
