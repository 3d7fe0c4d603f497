"""Recipe registries: every named configuration, discoverable by name.

`nemo twvlm pretrain --factory <name>` resolves names from RECIPES (training), `nemo twvlm curate
--factory <name>` from CURATE_RECIPES (curation); `all_recipes()` is what the tests iterate to
build every training recipe offline.
"""
from __future__ import annotations

from typing import Callable

from nemo_twvlm.training.config import PretrainConfig
from recipes.curate import RECIPES as CURATE_RECIPES
from recipes.pretrain import RECIPES


def all_recipes() -> dict[str, Callable[[], PretrainConfig]]:
    return dict(RECIPES)


def get_recipe(name: str) -> PretrainConfig:
    try:
        recipe = RECIPES[name]
    except KeyError:
        raise ValueError(f"recipe {name!r} is not registered; expected one of {sorted(RECIPES)}") from None
    return recipe()


__all__ = ["CURATE_RECIPES", "RECIPES", "all_recipes", "get_recipe"]
