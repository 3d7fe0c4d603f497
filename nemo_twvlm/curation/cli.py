"""Hydra composes conf/curation/<name>.yaml with overrides into a CurationConfig, and a config runs.

The command line is `nemo twvlm curate --factory NAME input_dir=IN output_dir=OUT [field=value ...]`
(launch.cli; `python -m nemo_twvlm.curation --config-name NAME ...` forwards to it), where NAME is a
recipe of recipes/curate.py (these YAMLs composed here, plus a few changed fields) or a YAML by name.

The conf directory is the repository's conf/curation, or $TWVLM_CONF/curation (rundir.conf_dir).
"""
from __future__ import annotations

import json
from pathlib import Path

from nemo_twvlm.curation.config import CurationConfig
from nemo_twvlm.rundir import conf_dir as conf_root

CONTRACT_KEYS = ("input", "kept", "dropped", "quarantined", "text_tokens", "image_tokens")


def conf_dir() -> Path:
    return conf_root() / "curation"


def compose_config(name: str, overrides: list[str], *, check: bool = True) -> CurationConfig:
    """check=False: the run's own fields may stay unset (`???` in the YAML reads as empty)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        composed = compose(config_name=name, overrides=overrides)
    for key in ("input_dir", "output_dir"):
        if OmegaConf.is_missing(composed, key):
            composed[key] = ""
    return CurationConfig.from_dict(OmegaConf.to_container(composed, resolve=True), check=check)


def run_config(cfg: CurationConfig) -> dict:
    """Check and run a config, print the contract's counts."""
    from nemo_twvlm.curation.pipeline import run_curation

    cfg.check()
    stats = run_curation(cfg)
    print(json.dumps({k: stats[k] for k in CONTRACT_KEYS}, ensure_ascii=False))
    return stats


def run(name: str, overrides: list[str]) -> dict:
    """Compose conf/curation/<name>.yaml with Hydra overrides and run it."""
    return run_config(compose_config(name, overrides))
