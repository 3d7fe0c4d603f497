"""Entry points: Hydra composes conf/curation/<name>.yaml with overrides into a CurationConfig.

    python -m nemo_twvlm.curation --config-name pairs_zh_tw input_dir=IN output_dir=OUT [key=value ...]
    nemo twvlm curate config=pairs_zh_tw input_dir=IN output_dir=OUT overrides="executor.name=xenna"
    nemo twvlm curate --factory curate_pairs_zh_tw input_dir=IN output_dir=OUT executor.name=xenna

The recipes in recipes/curate.py are these YAMLs composed here, plus a few changed fields.

The conf directory is this checkout's conf/curation, or $TWVLM_CONF/curation.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from nemo_twvlm.curation.config import CurationConfig

CONTRACT_KEYS = ("input", "kept", "dropped", "quarantined", "text_tokens", "image_tokens")


def conf_dir() -> Path:
    root = os.environ.get("TWVLM_CONF")
    return (Path(root) if root else Path(__file__).resolve().parents[2] / "conf") / "curation"


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


def curate(config: str, input_dir: str, output_dir: str, overrides: list[str] = ()) -> dict:
    """The typed form `nemo twvlm curate config=...` calls."""
    return run(config, [f"input_dir={input_dir}", f"output_dir={output_dir}", *overrides])


def _split_args(args: list[str]) -> tuple[str, list[str]]:
    name, overrides = "pairs_zh_tw", []
    it = iter(args)
    for arg in it:
        if arg in ("--config-name", "-cn"):
            name = next(it, name)
        elif arg.startswith("--config-name="):
            name = arg.split("=", 1)[1]
        else:
            overrides.append(arg)
    return name, overrides


def main(argv: list[str] | None = None) -> dict:
    return run(*_split_args(list(sys.argv[1:] if argv is None else argv)))
