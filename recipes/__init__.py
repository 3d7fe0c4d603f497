"""Recipe functions that return configs: `pretrain.py` (training; also what `plan` reads) and `curate.py`.

This folder installs as `nemo_twvlm_recipes` and each module's RECIPES table is registered under the
`nemo_twvlm.recipes` entry-point group (pyproject.toml); `nemo_twvlm.launch.recipes.find_recipes(kind)`
reads them, so the package never imports this folder by name.
"""
