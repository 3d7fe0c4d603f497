"""`python -m nemo_twvlm.curation --config-name pairs_zh_tw input_dir=IN output_dir=OUT [key=value ...]`

Hydra composes conf/curation/<name>.yaml (found from this checkout, or $TWVLM_CONF/curation) with
the overrides; the result is checked into a CurationConfig and run.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def conf_dir() -> Path:
    root = os.environ.get("TWVLM_CONF")
    return (Path(root) if root else Path(__file__).resolve().parents[2] / "conf") / "curation"


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
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from nemo_twvlm.curation import CurationConfig, run_curation

    name, overrides = _split_args(list(sys.argv[1:] if argv is None else argv))
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        composed = compose(config_name=name, overrides=overrides)
    cfg = CurationConfig.from_dict(OmegaConf.to_container(composed, resolve=True))
    stats = run_curation(cfg)
    print(json.dumps({k: stats[k] for k in ("input", "kept", "dropped", "quarantined", "text_tokens",
                                            "image_tokens")}, ensure_ascii=False))
    return stats


if __name__ == "__main__":
    main()
