"""Recipes are found through the `nemo_twvlm.recipes` entry-point group; the top-level recipes/ folder
installs as `nemo_twvlm_recipes`, so nothing named `recipes` is importable from an installed package."""
import os
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from nemo_twvlm.launch import recipes

REPO = Path(__file__).resolve().parents[2]


def test_installed_package_offers_recipes_by_entry_point_and_no_module_named_recipes(tmp_path):
    # Outside the checkout and without PYTHONPATH: only what the install put on the path is importable.
    probe = textwrap.dedent("""
        import importlib.util
        from nemo_twvlm.launch.recipes import find_recipes
        print(importlib.util.find_spec("recipes") is None, importlib.util.find_spec("nemo_twvlm_recipes").origin)
        print(len(find_recipes("pretrain")), len(find_recipes("curate")))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    no_recipes, origin, counts = out.stdout.split()[0], out.stdout.split()[1], out.stdout.splitlines()[1]
    assert no_recipes == "True", "a module named `recipes` is importable from the installed package"
    assert Path(origin).parent.name == "recipes"  # the client's folder, under the installed name
    from nemo_twvlm_recipes import curate, pretrain

    assert counts == f"{len(pretrain.RECIPES)} {len(curate.RECIPES)}"


def test_pyproject_lists_every_package_folder():
    """The package list is explicit (setuptools cannot find a renamed folder): a new subpackage must be named."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "nemo_twvlm").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert listed == folders | {"nemo_twvlm_recipes"}


@pytest.fixture
def fake_group(tmp_path, monkeypatch):
    """Entry points from a module written here, standing in for the installed distributions."""
    (tmp_path / "more_recipes.py").write_text(
        "def twvlm_more():\n    return 'more'\n\nRECIPES = {'twvlm_more': twvlm_more}\n"
        "CLASH = {'twvlm_debug': twvlm_more}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    points = []
    monkeypatch.setattr(recipes, "entry_points", lambda group, name: [p for p in points if p.name == name])
    recipes._load.cache_clear()
    yield points
    recipes._load.cache_clear()


def test_tables_of_one_kind_merge_and_a_name_registered_twice_is_refused(fake_group):
    fake_group += [EntryPoint("pretrain", "nemo_twvlm_recipes.pretrain:RECIPES", recipes.GROUP),
                   EntryPoint("pretrain", "more_recipes:RECIPES", recipes.GROUP)]
    found = recipes.find_recipes("pretrain")
    assert found["twvlm_more"]() == "more" and "twvlm_debug" in found
    assert recipes.get_recipe("twvlm_more") == "more"
    fake_group.append(EntryPoint("pretrain", "more_recipes:CLASH", recipes.GROUP))
    recipes._load.cache_clear()
    with pytest.raises(ValueError, match="'twvlm_debug' is registered twice"):
        recipes.find_recipes("pretrain")


def test_a_kind_nobody_registers_names_the_group(fake_group):
    with pytest.raises(LookupError, match="no 'eval' recipes under the entry-point group 'nemo_twvlm.recipes'"):
        recipes.find_recipes("eval")
